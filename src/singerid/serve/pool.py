"""Model inference in a pool of processes, each holding one loaded model.

The web process never imports torch: it hands server-named temporary files to the pool and gets
plain arrays and dicts back. Processes start with ``spawn`` (no forked torch state) and exit on
their own when the web process dies, even by SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from ..errors import SingerIdError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""How long the pool waits for every process to load the model."""
PARENT_POLL_S = 1.0

_ENCODER: Any = None


class PoolBroken(SingerIdError):
    """An inference process died (out of memory, killed); the pool is being restarted."""


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _init(model: str, device: str, threads: int, max_seconds: float, parent: int) -> None:
    """Runs once in each inference process: load the model (errors are kept for the first job)."""
    global _ENCODER
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch

    torch.set_num_threads(threads)
    from ..infer import load_model

    try:
        _ENCODER = load_model(model, device=device, max_seconds=max_seconds)
    except Exception as exc:  # kept and raised by every job, so the web process reports it
        _ENCODER = exc if isinstance(exc, SingerIdError) else SingerIdError(f"{model}: cannot load the model ({exc}).")


def _encoder():
    if isinstance(_ENCODER, BaseException):
        raise _ENCODER
    return _ENCODER


def describe() -> dict:
    """What the web process needs to know about the model (no torch objects)."""
    enc = _encoder()
    art = enc.artifact
    return {
        "pid": os.getpid(),
        "fingerprint": art.fingerprint,
        "dim": enc.dim,
        "calibration": art.calibration,
        "window_seconds": enc.window,
        "backbone": art.config.backbone,
        "path": str(art.path) if art.path else None,
    }


def measure(path: str, windows: bool = False) -> dict:
    """Embedding, length and input quality of one file; with ``windows`` also every window's vector."""
    from ..audio import load_audio
    from ..quality import assess
    from ..vectors import l2_normalize

    enc = _encoder()
    audio = load_audio(path, max_clipped=None, max_seconds=enc.max_seconds)
    win = enc.embed_windows(audio, source=path)
    out = {
        "embedding": l2_normalize(win.embeddings.mean(0)),
        "seconds": len(audio) / enc.sample_rate,
        "quality": assess(audio, enc.sample_rate).to_dict(),
    }
    if windows:
        out["windows"] = {"embeddings": win.embeddings, "starts": win.starts, "ends": win.ends}
    return out


def verify(path_a: str, path_b: str, threshold: float | None) -> dict:
    """:meth:`SingerEncoder.verify` of two files, as a dict."""
    return _encoder().verify(path_a, path_b, threshold=threshold).to_dict()


class InferencePool:
    """``workers`` processes running the model with ``threads`` torch threads each; recordings longer
    than ``max_seconds`` are refused there too (the web process checks file headers first)."""

    def __init__(self, model: str, workers: int, threads: int, device: str = "cpu", max_seconds: float | None = None) -> None:
        self.model, self.workers, self.threads, self.device = model, workers, threads, device
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._executor = self._new_executor()
        self.info: dict = {}

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(self.model, self.device, self.threads, self.max_seconds, os.getpid()),
        )

    def start(self) -> dict:
        """Start every process and wait until each has loaded the model; return :func:`describe`'s answer.

        Raises the model's own error (one line) when it cannot be loaded.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        pids: set[int] = set()
        while len(pids) < self.workers:
            futures = [self._executor.submit(describe) for _ in range(self.workers)]
            for f in futures:
                self.info = f.result(timeout=max(1.0, deadline - time.monotonic()))
                pids.add(self.info["pid"])
            if time.monotonic() > deadline:
                break
        return self.info

    async def run(self, fn: Callable, *args) -> Any:
        """Run ``fn(*args)`` in a pool process; a dead process gives :class:`PoolBroken` and a fresh pool."""
        executor = self._executor
        try:
            return await asyncio.wrap_future(executor.submit(fn, *args))
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise PoolBroken("an inference process stopped unexpectedly; the service restarted it. Retry the request.") from exc

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                log.error("an inference process died; starting a new pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
