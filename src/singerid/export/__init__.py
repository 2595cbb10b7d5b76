"""Shipping a model: ONNX and TorchScript ``formats`` (export, metadata, loading) and the
HEAR embedding API in ``hear`` (also importable as ``singerid.hear``).
"""
