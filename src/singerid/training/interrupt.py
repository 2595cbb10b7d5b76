"""Ctrl-C during training: finish the step, save a checkpoint, stop, and say where it went."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import lightning as L
from torch.utils.data import get_worker_info


class StopOnInterrupt(L.Callback):
    """After :meth:`request` (the first Ctrl-C), save a checkpoint at ``path`` at the end of the
    current optimiser step and stop the run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.requested = False

    def request(self, signum=None, frame=None) -> None:
        self.requested = True
        # A second Ctrl-C interrupts at once, without a checkpoint.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.requested and not trainer.should_stop:
            trainer.save_checkpoint(str(self.path))
            trainer.should_stop = True


@contextlib.contextmanager
def stop_on_interrupt(path: Path) -> Iterator[StopOnInterrupt]:
    """A :class:`StopOnInterrupt` that the first SIGINT triggers while the block runs; the previous
    SIGINT handler comes back however the block ends. Signals reach only the main thread, so
    elsewhere the callback is returned untriggerable."""
    callback = StopOnInterrupt(path)
    if threading.current_thread() is not threading.main_thread():
        yield callback
        return
    previous = signal.signal(signal.SIGINT, callback.request)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches the whole process group, and a worker that died of
    it would turn the main process's orderly stop into a crash; the main process decides."""
    if get_worker_info() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
