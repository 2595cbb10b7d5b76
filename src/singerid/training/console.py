"""What training prints: one progress line counted in optimiser steps, without Lightning's chatter."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric")
"""Lightning's info lines (accelerator summary, tips, "max_steps reached") are not for singerid users."""

NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*does not have many workers",
)
"""Warnings raised inside Lightning about its own internals or choices singerid makes on purpose."""


class StepProgressBar(TQDMProgressBar):
    """A run is one epoch of ``max_steps`` batches, so the bar reads "training" rather than an epoch
    number, and its remaining time is the run's. Validation is short and shows no bar of its own."""

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("training")
        self.train_progress_bar.unit = "step"


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` below WARNING and the :data:`NOISE` warnings while the block runs."""
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    with warnings.catch_warnings():
        for pattern in NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
