"""The LightningModule: encoder + projection head (+ BYOL predictor and EMA target), one SSL objective."""

from __future__ import annotations

import copy
import logging
import math
import warnings

import lightning as L
import numpy as np
import torch

from ..model.backbones import Predictor, ProjectionHead, build_encoder
from ..records import Segment
from . import losses
from .config import TrainConfig
from .distributed import gather_with_grad

log = logging.getLogger(__name__)


class SSLModule(L.LightningModule):
    """Self-supervised training of a singer encoder with the objective ``cfg.method``."""

    def __init__(self, cfg: TrainConfig, val_segments: list[Segment] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.encoder = build_encoder(cfg.model)
        self.projector = ProjectionHead(cfg.model.embedding_dim, cfg.projection_dim)
        if cfg.method == "byol":
            self.predictor = Predictor(cfg.projection_dim, cfg.loss.predictor_hidden)
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.val_segments = val_segments or []
        self._val_embeddings: list[torch.Tensor] = []
        self._warned_val = False

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The downstream embedding h (unnormalised)."""
        return self.encoder(wave)

    def pair_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective on two augmented views ``(batch, samples)`` of the same clips, and its named parts."""
        z1 = self.projector(self.encoder(x1))
        z2 = self.projector(self.encoder(x2))
        if self.cfg.method == "byol":
            with torch.no_grad():
                t1 = self.target_projector(self.target_encoder(x1))
                t2 = self.target_projector(self.target_encoder(x2))
            loss = losses.byol_loss(self.predictor(z1), self.predictor(z2), t1, t2)
            return loss, {}
        # Gathered with gradients: negatives and batch statistics span all processes.
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        return losses.ssl_loss(self.cfg.method, z1, z2, **_loss_options(self.cfg))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x1, x2 = batch
        loss, parts = self.pair_loss(x1, x2)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {self.global_step}; lower optim.lr or check the data for NaN."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x1))
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=len(x1))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.cfg.method == "byol":
            rate = losses.byol_ema_rate(self.global_step, self.cfg.max_steps, base=self.cfg.loss.ema_base)
            losses.ema_update(self.target_encoder, self.encoder, rate)
            losses.ema_update(self.target_projector, self.projector, rate)
            self.log("train/ema_rate", rate)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._val_embeddings.append(torch.nn.functional.normalize(self.encoder(batch).float(), dim=1).cpu())

    def on_validation_epoch_end(self) -> None:
        from ..errors import TrialsError
        from ..eval.metrics import eer
        from ..eval.trials import TrialsShortfallWarning, make_trials, score_trials

        if not self._val_embeddings:
            return
        emb = torch.cat(self._val_embeddings).numpy()
        self._val_embeddings.clear()
        if len(emb) != len(self.val_segments) or len({s.singer for s in self.val_segments}) < 2:
            return
        try:
            with warnings.catch_warnings():
                # Held-out files are few per singer: fewer target pairs than asked is expected here.
                warnings.simplefilter("ignore", TrialsShortfallWarning)
                trials = make_trials(self.val_segments, n_target=20, n_nontarget=20, condition="cross-recording", seed=self.cfg.seed)
        except TrialsError as exc:
            if not self._warned_val:
                log.warning("validation EER is off: %s", exc)
                self._warned_val = True
            return
        scores = score_trials(trials, [s.id for s in self.val_segments], emb)
        labels = np.array([t.target for t in trials])
        if labels.all() or not labels.any():
            return
        self.log("val/eer", float(eer(scores, labels)[0]), prog_bar=True)

    def configure_optimizers(self):
        oc = self.cfg.optim
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=oc.lr, weight_decay=oc.weight_decay)
        total = self.cfg.max_steps

        def factor(step: int) -> float:
            if oc.warmup_steps and step < oc.warmup_steps:
                return (step + 1) / oc.warmup_steps
            if oc.cosine:
                progress = (step - oc.warmup_steps) / max(1, total - oc.warmup_steps)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
            return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Restored on resume so that dropout draws continue exactly as in an uninterrupted run.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])


def _loss_options(cfg: TrainConfig) -> dict:
    """The options of ``cfg.loss`` that the chosen objective takes."""
    lc = cfg.loss
    contrastive = {"temperature": lc.temperature, "max_negatives": lc.max_negatives, "symmetric": lc.symmetric}
    regulariser = {"var_weight": lc.var_weight, "cov_weight": lc.cov_weight}
    return {
        "contrastive": contrastive,
        "contrastive-vc": {**contrastive, **regulariser},
        "vicreg": {"sim_weight": lc.sim_weight, **regulariser},
        "uniformity": {},
    }[cfg.method]
