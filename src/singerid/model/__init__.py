"""The encoder: log-mel ``frontend``, ``backbones``, the saved model ``artifact`` and the
``official`` import of the authors' checkpoints. Everything that builds, saves or loads
network weights lives here; nothing here trains or evaluates.
"""
