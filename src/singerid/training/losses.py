"""Self-supervised objectives on the projections of two views.

Every function is pure torch and takes ``z1, z2`` of shape ``(N, d)``: row ``i`` of ``z1``
and row ``i`` of ``z2`` are the projections of two views of the same item. Under
data-parallel training, gather both with :func:`singerid.training.distributed.gather_with_grad`
first, so negatives and batch statistics span the global batch (see that module).

Weights are keyword arguments whose defaults are the paper's values. The four methods that
only need ``(z1, z2)`` share one signature and are reachable by name through
:func:`ssl_loss` (total plus named terms for logging). BYOL needs predictor outputs and
target projections as well, so it has its own functions: :func:`byol_loss`,
:func:`byol_ema_rate`, :func:`ema_update`.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

VAR_EPS = 1e-8
"""Added to the batch variance before the square root in :func:`variance_loss`."""

SSL_METHODS = ("byol", "contrastive", "contrastive-vc", "uniformity", "vicreg")
"""Every objective the training module knows, by its configuration name."""


def _check_pair(z1: Tensor, z2: Tensor, min_rows: int = 1) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ConfigError(
            f"the two views' projections have shapes {tuple(z1.shape)} and {tuple(z2.shape)}; "
            "both must be (N, d) with the same N and d."
        )
    if z1.shape[0] < min_rows:
        raise ConfigError(
            f"this objective needs at least {min_rows} items in the batch, got {z1.shape[0]}. "
            "Raise the batch size."
        )


# --- decoupled contrastive --------------------------------------------------------------


def negative_indices(n: int, max_negatives: int, device: torch.device | None = None) -> Tensor:
    """Columns used as negatives for each anchor: ``(n, m)`` with ``m = min(n - 1, max_negatives)``.

    Anchor ``i`` takes the ``m`` items that follow it cyclically, ``(i + 1 + k) mod n`` for
    ``k < m``: never ``i`` itself, every item serves as a negative exactly ``m`` times, and
    the choice is deterministic (no seed). When ``n - 1 <= max_negatives`` this is simply
    every other item.
    """
    if max_negatives < 1:
        raise ConfigError(f"max_negatives must be at least 1, got {max_negatives}.")
    m = min(n - 1, max_negatives)
    rows = torch.arange(n, device=device).unsqueeze(1)
    return (rows + 1 + torch.arange(m, device=device).unsqueeze(0)) % n


def _decoupled_one_way(z1: Tensor, z2: Tensor, temperature: float, max_negatives: int) -> Tensor:
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    positives = sim.diagonal()
    negatives = sim.gather(1, negative_indices(sim.shape[0], max_negatives, sim.device))
    return (torch.logsumexp(negatives, dim=1) - positives).mean()


def decoupled_contrastive_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float = 0.2,
    max_negatives: int = 250,
    symmetric: bool = False,
) -> Tensor:
    """Decoupled contrastive loss (the positive is not in the denominator).

    With ``s_ij = cos(z1_i, z2_j) / temperature``:
    ``L = mean_i [ -s_ii + log sum_{j in neg(i)} exp(s_ij) ]``, where ``neg(i)`` are items of
    the other view chosen by :func:`negative_indices` (all ``j != i`` when ``N - 1 <= max_negatives``).
    ``symmetric=True`` averages this with the same loss with the views swapped.

    Args:
        z1, z2: ``(N, d)`` projections of the two views (normalised here; cosine similarity).
    Returns:
        Scalar tensor.
    """
    _check_pair(z1, z2, min_rows=2)
    loss = _decoupled_one_way(z1, z2, temperature, max_negatives)
    if symmetric:
        loss = 0.5 * (loss + _decoupled_one_way(z2, z1, temperature, max_negatives))
    return loss


# --- VICReg-style terms -----------------------------------------------------------------


def invariance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Mean squared error over all ``N * d`` entries of ``z1 - z2``. ``(N, d), (N, d) -> ()``."""
    _check_pair(z1, z2)
    return F.mse_loss(z1, z2)


def variance_loss(z: Tensor, eps: float = VAR_EPS) -> Tensor:
    """Hinge on the per-dimension standard deviation: ``mean_d relu(1 - sqrt(Var(z_d) + eps))``.

    ``Var`` is the unbiased batch variance (divides by ``N - 1``, like ``torch.var``).
    ``(N, d) -> ()``; needs ``N >= 2``.
    """
    _check_pair(z, z, min_rows=2)
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return F.relu(1.0 - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of the unbiased covariance matrix, divided by ``d``.

    ``(N, d) -> ()``; needs ``N >= 2``.
    """
    _check_pair(z, z, min_rows=2)
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag_embed(cov.diagonal())
    return off_diagonal.pow(2).sum() / d


def pair_variance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """``(variance_loss(z1) + variance_loss(z2)) / 2``."""
    return 0.5 * (variance_loss(z1) + variance_loss(z2))


def pair_covariance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """``covariance_loss(z1) + covariance_loss(z2)``."""
    return covariance_loss(z1) + covariance_loss(z2)


# --- alignment and uniformity -----------------------------------------------------------


def alignment_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Mean squared distance between positives: ``mean_i ||z1_i - z2_i||^2``. ``-> ()``."""
    _check_pair(z1, z2)
    return (z1 - z2).pow(2).sum(dim=1).mean()


def uniformity_loss(z: Tensor, t: float = 2.0) -> Tensor:
    """Log of the mean Gaussian potential over distinct pairs: ``log mean_{i<j} exp(-t ||z_i - z_j||^2)``.

    ``(N, d) -> ()``; needs ``N >= 2``. Squared distances come from the Gram matrix (no square
    root, so the gradient stays finite for identical rows).
    """
    _check_pair(z, z, min_rows=2)
    n = z.shape[0]
    sq_norms = z.pow(2).sum(dim=1)
    sq_dist = (sq_norms.unsqueeze(1) + sq_norms.unsqueeze(0) - 2.0 * z @ z.T).clamp_min(0.0)
    i, j = torch.triu_indices(n, n, offset=1, device=z.device)
    pairs = -t * sq_dist[i, j]
    return torch.logsumexp(pairs, dim=0) - math.log(pairs.numel())


# --- the four (z1, z2) objectives, as named weighted terms ------------------------------


def contrastive_terms(
    z1: Tensor, z2: Tensor, *, temperature: float = 0.2, max_negatives: int = 250, symmetric: bool = False
) -> dict[str, Tensor]:
    """Terms of the ``contrastive`` objective (their sum is the loss)."""
    return {
        "contrastive": decoupled_contrastive_loss(
            z1, z2, temperature=temperature, max_negatives=max_negatives, symmetric=symmetric
        )
    }


def contrastive_vc_terms(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float = 0.2,
    max_negatives: int = 250,
    symmetric: bool = False,
    var_weight: float = 25.0,
    cov_weight: float = 100.0,
) -> dict[str, Tensor]:
    """Weighted terms of ``contrastive-vc``: contrastive + 25 * variance + 100 * covariance."""
    terms = contrastive_terms(z1, z2, temperature=temperature, max_negatives=max_negatives, symmetric=symmetric)
    terms["variance"] = var_weight * pair_variance_loss(z1, z2)
    terms["covariance"] = cov_weight * pair_covariance_loss(z1, z2)
    return terms


def vicreg_terms(
    z1: Tensor, z2: Tensor, *, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 100.0
) -> dict[str, Tensor]:
    """Weighted terms of VICReg: 25 * invariance (MSE) + 25 * variance + 100 * covariance."""
    return {
        "invariance": sim_weight * invariance_loss(z1, z2),
        "variance": var_weight * pair_variance_loss(z1, z2),
        "covariance": cov_weight * pair_covariance_loss(z1, z2),
    }


def uniformity_terms(
    z1: Tensor, z2: Tensor, *, align_weight: float = 1.0, unif_weight: float = 1.0, t: float = 2.0
) -> dict[str, Tensor]:
    """Weighted terms of alignment + uniformity: ``align + U(z1) + U(z2)``."""
    return {
        "alignment": align_weight * alignment_loss(z1, z2),
        "uniformity": unif_weight * (uniformity_loss(z1, t) + uniformity_loss(z2, t)),
    }


TermsFn = Callable[..., dict[str, Tensor]]

LOSS_TERMS: dict[str, TermsFn] = {
    "contrastive": contrastive_terms,
    "contrastive-vc": contrastive_vc_terms,
    "uniformity": uniformity_terms,
    "vicreg": vicreg_terms,
}
"""Method name -> function ``(z1, z2, **weights) -> {term name: weighted scalar}``."""


def ssl_loss(method: str, z1: Tensor, z2: Tensor, **kwargs: float | int | bool) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of a ``(z1, z2)`` objective by name, and its weighted terms for logging.

    Args:
        method: one of ``LOSS_TERMS`` (``contrastive``, ``contrastive-vc``, ``uniformity``, ``vicreg``).
        z1, z2: ``(N, d)`` projections of the two views (already gathered across processes).
        kwargs: weights/options of that method (defaults: the paper's values).
    Returns:
        ``(loss, terms)``: the scalar to backpropagate (sum of the terms) and the terms, detached.
    """
    if method not in LOSS_TERMS:
        hint = " BYOL has its own function, byol_loss(q1, q2, t1, t2)." if method == "byol" else ""
        raise ConfigError(f"unknown objective {method!r}; choose one of {sorted(LOSS_TERMS)}.{hint}")
    fn = LOSS_TERMS[method]
    options = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"objective {method!r} has no option(s) {unknown}; it takes {options}.")
    terms = fn(z1, z2, **kwargs)
    total = torch.stack(list(terms.values())).sum()
    return total, {name: value.detach() for name, value in terms.items()}


def contrastive_loss(z1: Tensor, z2: Tensor, **kwargs: float | int | bool) -> Tensor:
    """Scalar ``contrastive`` loss; see :func:`contrastive_terms`."""
    return ssl_loss("contrastive", z1, z2, **kwargs)[0]


def contrastive_vc_loss(z1: Tensor, z2: Tensor, **kwargs: float | int | bool) -> Tensor:
    """Scalar ``contrastive-vc`` loss; see :func:`contrastive_vc_terms`."""
    return ssl_loss("contrastive-vc", z1, z2, **kwargs)[0]


def vicreg_loss(z1: Tensor, z2: Tensor, **kwargs: float | int | bool) -> Tensor:
    """Scalar VICReg loss; see :func:`vicreg_terms`."""
    return ssl_loss("vicreg", z1, z2, **kwargs)[0]


def align_uniform_loss(z1: Tensor, z2: Tensor, **kwargs: float | int | bool) -> Tensor:
    """Scalar alignment + uniformity loss; see :func:`uniformity_terms`."""
    return ssl_loss("uniformity", z1, z2, **kwargs)[0]


LOSSES: dict[str, Callable[..., Tensor]] = {
    "contrastive": contrastive_loss,
    "contrastive-vc": contrastive_vc_loss,
    "uniformity": align_uniform_loss,
    "vicreg": vicreg_loss,
}
"""Method name -> scalar loss ``(z1, z2, **weights) -> ()``."""


# --- BYOL -------------------------------------------------------------------------------


def byol_loss(q1: Tensor, q2: Tensor, t1: Tensor, t2: Tensor) -> Tensor:
    """Symmetrised BYOL regression loss on L2-normalised vectors.

    ``L = 1/2 [ MSE(n(q1), n(t2)) + MSE(n(q2), n(t1)) ]`` with ``n`` the L2 normalisation and
    MSE the mean over all ``N * d`` entries. The targets are detached here.

    Args:
        q1, q2: ``(N, d)`` online predictor outputs for views 1 and 2.
        t1, t2: ``(N, d)`` target-network projections for views 1 and 2.
    """
    _check_pair(q1, t2)
    _check_pair(q2, t1)

    def regress(q: Tensor, t: Tensor) -> Tensor:
        return F.mse_loss(F.normalize(q, dim=1), F.normalize(t.detach(), dim=1))

    return 0.5 * (regress(q1, t2) + regress(q2, t1))


def byol_ema_rate(step: int, total_steps: int, base: float = 0.99) -> float:
    """Target EMA rate ``1 - (1 - base) * (cos(pi k / K) + 1) / 2``: ``base`` at step 0, 1 at ``K``.

    Steps past ``total_steps`` stay at 1.
    """
    if total_steps <= 0:
        raise ConfigError(f"total_steps must be positive for the BYOL EMA schedule, got {total_steps}.")
    if not 0.0 <= base <= 1.0:
        raise ConfigError(f"the BYOL EMA base rate must lie in [0, 1], got {base}.")
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    """``target <- rate * target + (1 - rate) * online`` for parameters and floating buffers.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied from ``online``.
    The two modules must have the same parameter and buffer names and shapes.
    """
    pairs = [
        (list(target.named_parameters()), list(online.named_parameters())),
        (list(target.named_buffers()), list(online.named_buffers())),
    ]
    for target_items, online_items in pairs:
        if [(n, t.shape) for n, t in target_items] != [(n, t.shape) for n, t in online_items]:
            raise ConfigError("ema_update: the target and online networks differ in structure; build both alike.")
        for (_, t), (_, o) in zip(target_items, online_items):
            if t.is_floating_point():
                t.lerp_(o, 1.0 - rate)
            else:
                t.copy_(o)
