"""Ctrl-C during training: finish the step, save a checkpoint, stop, and say where it went."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L
from torch.utils.data import get_worker_info


class StopOnInterrupt(L.Callback):
    """The first SIGINT asks the run to stop after the current optimiser step, with a checkpoint at
    ``path``; a second SIGINT interrupts at once (nothing saved). Active only in the main thread,
    where Python delivers signals."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.requested and not trainer.should_stop:
            trainer.save_checkpoint(str(self.path))
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches the whole process group, and a worker that died of
    it would turn the main process's orderly stop into a crash; the main process decides."""
    if get_worker_info() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
