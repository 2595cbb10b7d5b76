"""One exception family for everything a user can get wrong.

Every message names the file (or object) at fault and says how to fix it.
The CLI prints ``str(error)`` on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class SingerIdError(Exception):
    """Base class of every error singerid raises on purpose."""


class AudioError(SingerIdError):
    """Audio that cannot be used: missing, unreadable, corrupt, silent, too short, NaN."""


class DatasetError(SingerIdError):
    """A data folder, manifest or layout that does not hold what was asked for."""


class CheckpointError(SingerIdError):
    """A model artefact or checkpoint that is missing, corrupt or does not match."""


class ConfigError(SingerIdError):
    """A configuration value or command-line option that is not valid."""


class TrialsError(SingerIdError):
    """A trial list that cannot be built or does not match the data."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after saving a checkpoint; ``checkpoint`` is where, resume from it."""

    def __init__(self, message: str, checkpoint: str) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class OutputError(SingerIdError):
    """An output that cannot be written now: locked by another run, or partial work made with other settings."""
