"""``train()``: one self-supervised training run, from recordings to a model artefact."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ..data.shards import INDEX_NAME, is_shard_dir
from ..errors import CheckpointError, DatasetError, TrainingInterrupted
from ..fileio import SETTINGS_FILE, atomic_path, check_settings
from ..model.artifact import save_artifact
from ..records import Recording
from .config import TrainConfig
from .console import StepProgressBar, quiet_lightning
from .data import PairDataModule, ShardPairDataModule, split_files
from .interrupt import stop_on_interrupt
from .module import SSLModule

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a run's outputs went."""

    artifact: Path
    checkpoint: Path
    log_dir: Path
    steps: int


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an earlier ``metrics.csv`` is continued, not deleted."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="", encoding="utf-8") as fh:
                self.metrics_keys = sorted(csv.DictReader(fh).fieldnames or [])


class _ResumableCSVLogger(CSVLogger):
    """A CSV logger whose history survives ``--resume`` (Lightning's own deletes ``metrics.csv`` then)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def drop_repeated_rows(metrics_csv: Path) -> int:
    """Keep the last of the rows logged twice for one step (the steps after the last checkpoint of
    an interrupted run are logged again after its resume); returns how many were dropped."""
    if not metrics_csv.is_file():
        return 0
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    last = {}
    for i, row in enumerate(rows):
        last[(row.get("step"), frozenset(k for k, v in row.items() if v not in ("", None)))] = i
    keep = sorted(last.values())
    if len(keep) < len(rows):
        with atomic_path(metrics_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows[i] for i in keep)
    return len(rows) - len(keep)


def _loggers(out: Path) -> list:
    loggers = [_ResumableCSVLogger(str(out), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401  (optional extra)
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


def _shard_dir(source: Sequence[Recording] | str | os.PathLike) -> Path | None:
    """``source`` as a shard folder, or None when it is a list of recordings."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    if not is_shard_dir(source):
        raise DatasetError(f"{source}: no {INDEX_NAME}; pass recordings, or a shard folder written by `singerid shard`.")
    return Path(source)


RESUMABLE_CHANGES = ("max_steps", "num_workers")
"""Settings a resumed run may change (train further, load data with more processes); any other is refused."""


def _run_settings(cfg: TrainConfig, shard_dir: Path | None, recordings) -> dict:
    """What a run's checkpoints depend on: the config (less :data:`RESUMABLE_CHANGES`) and the data."""
    if shard_dir is not None:
        from ..data.shards import read_index

        data = read_index(shard_dir).fingerprint
    else:
        listing = json.dumps(sorted([r.path, r.singer, r.song] for r in recordings))
        data = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    settings = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}
    return {**settings, "data": data}


def train(
    cfg: TrainConfig,
    recordings: Sequence[Recording] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg.method`` on ``recordings`` (no singer labels used for learning).

    Writes ``out_dir/checkpoints/last.ckpt`` every ``cfg.checkpoint_every`` steps (when validation runs too),
    logs to ``out_dir/logs/metrics.csv`` (and TensorBoard when installed) and the model
    artefact to ``out_dir/model``. With ``resume`` the run continues from the last checkpoint.
    ``recordings`` may instead be a shard folder (``shards.json``, see :mod:`singerid.data.shards`): its
    pairs are streamed rather than loaded, and its last shards validate.
    """
    cfg.validate()
    shard_dir = _shard_dir(recordings)
    if shard_dir is None and len(recordings) < 2:
        raise DatasetError(f"training needs at least 2 files, got {len(recordings)}.")
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise CheckpointError(f"{last}: nothing to resume from; run without --resume to start fresh.")
    if not resume and last.is_file():
        raise CheckpointError(f"{out}: holds an earlier run; pass --resume to continue it, or choose a new --out.")
    if not resume:
        (ckpt_dir / SETTINGS_FILE).unlink(missing_ok=True)  # a run killed before its first checkpoint
    check_settings(ckpt_dir, _run_settings(cfg, shard_dir, recordings))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if shard_dir is not None:
        data: PairDataModule | ShardPairDataModule = ShardPairDataModule(cfg, shard_dir)
    else:
        train_files, val_files = split_files(list(recordings), cfg.val_fraction, cfg.seed)
        data = PairDataModule(cfg, train_files, val_files, progress=progress)
    validate = bool(data.val_segments)
    module = SSLModule(cfg, data.val_segments)
    with quiet_lightning(), stop_on_interrupt(last) as interrupt:
        trainer = L.Trainer(
            max_steps=cfg.max_steps,
            max_epochs=-1,
            val_check_interval=cfg.checkpoint_every if validate else None,
            check_val_every_n_epoch=None,
            use_distributed_sampler=False,
            reload_dataloaders_every_n_epochs=1,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            num_nodes=cfg.num_nodes,
            strategy="ddp" if (cfg.num_nodes > 1 or (torch.cuda.device_count() > 1 and cfg.devices != 1)) else "auto",
            precision=_precision(cfg),
            gradient_clip_val=cfg.optim.gradient_clip or None,
            callbacks=[
                ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0, every_n_train_steps=cfg.checkpoint_every),
                interrupt,
                *([StepProgressBar()] if progress else []),
            ],
            logger=_loggers(out),
            log_every_n_steps=1,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if validate else 0,
            enable_progress_bar=progress,
            enable_model_summary=False,
            default_root_dir=str(out),
        )
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        drop_repeated_rows(out / "logs" / "metrics.csv")
    if interrupt.requested:
        raise TrainingInterrupted(
            f"stopped at step {trainer.global_step} of {cfg.max_steps}; checkpoint saved to {last}",
            str(last),
        )
    artifact = save_artifact(
        out / "model", module.encoder.cpu(), cfg.model, training=cfg.to_dict(), window_seconds=cfg.crop_seconds
    )
    log.info("model artefact: %s; logs: %s; checkpoint: %s", artifact, out / "logs", last)
    return TrainResult(artifact=artifact, checkpoint=last, log_dir=out / "logs", steps=trainer.global_step)
