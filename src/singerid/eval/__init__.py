"""Evaluation: ``trials`` and ``metrics`` (EER, minDCF, MNR, retrieval), the linear ``probe``,
``calibration`` and score normalisation, ``invariance`` probes, ``baselines`` to compare
against, the ``evaluate`` orchestration and its ``report``.
"""
