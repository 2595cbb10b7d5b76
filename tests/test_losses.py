"""Losses against closed-form values on tiny inputs and against naive loop implementations."""

from __future__ import annotations

import math

import pytest
import torch

from singerid.errors import ConfigError
from singerid.training.losses import (
    LOSS_TERMS,
    LOSSES,
    byol_ema_rate,
    byol_loss,
    covariance_loss,
    decoupled_contrastive_loss,
    ema_update,
    negative_indices,
    ssl_loss,
    uniformity_loss,
    variance_loss,
)

TAU = 0.2


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --- closed-form values -----------------------------------------------------------------


def test_contrastive_identical_orthogonal_views() -> None:
    eye = t([[1, 0], [0, 1]])
    # s_ii = 1/tau, the single negative has cosine 0: L = -1/tau + log(exp(0)).
    assert decoupled_contrastive_loss(eye, eye).item() == pytest.approx(-1 / TAU)
    # Swapped views: positive cosine 0, negative cosine 1.
    assert decoupled_contrastive_loss(eye, eye.flip(0)).item() == pytest.approx(1 / TAU)
    # Cosine similarity: scale does not matter.
    assert decoupled_contrastive_loss(3 * eye, 0.5 * eye).item() == pytest.approx(-1 / TAU)


def test_contrastive_three_items() -> None:
    z = t([[1, 0], [0, 1], [-1, 0]])
    e5 = math.exp(-1 / TAU)
    expected = (
        (-1 / TAU + math.log(1 + e5)) + (-1 / TAU + math.log(2)) + (-1 / TAU + math.log(e5 + 1))
    ) / 3
    assert decoupled_contrastive_loss(z, z).item() == pytest.approx(expected)


def test_variance_and_covariance_closed_form() -> None:
    # dim 0: unbiased var 2 -> std > 1 -> 0; dim 1: var 0 -> 1 - sqrt(1e-8).
    assert variance_loss(t([[1, 0], [-1, 0]])).item() == pytest.approx((0 + (1 - 1e-4)) / 2)
    # unbiased var 0.5 (a biased estimate would give 0.25)
    assert variance_loss(t([[0.5, 3], [-0.5, 1]])).item() == pytest.approx((1 - math.sqrt(0.5 + 1e-8)) / 2)
    # covariance [[2, 2], [2, 2]]: off-diagonal squares sum to 8, divided by d = 2.
    assert covariance_loss(t([[1, 1], [-1, -1]])).item() == pytest.approx(4.0)
    # centred rows [[-1, 0], [0, 2], [1, -2]]: cov_01 = -2 / (3 - 1) = -1 -> 2 * 1 / 2.
    assert covariance_loss(t([[1, 2], [2, 4], [3, 0]])).item() == pytest.approx(1.0)


def test_vicreg_closed_form() -> None:
    z1, z2 = t([[1, 0], [0, 1]]), t([[0, 1], [1, 0]])
    # MSE 1; per-dim var 0.5; cov_01 = -0.5 -> c = 2 * 0.25 / 2 = 0.25 per view.
    var = 1 - math.sqrt(0.5 + 1e-8)
    loss, terms = ssl_loss("vicreg", z1, z2)
    assert terms["invariance"].item() == pytest.approx(25.0)
    assert terms["variance"].item() == pytest.approx(25 * var)
    assert terms["covariance"].item() == pytest.approx(100 * 0.5)
    assert loss.item() == pytest.approx(25 + 25 * var + 50)
    assert LOSSES["vicreg"](z1, z2, sim_weight=0.0, cov_weight=0.0).item() == pytest.approx(25 * var)


def test_contrastive_vc_closed_form() -> None:
    z = t([[1, 0], [-1, 0]])
    # contrastive: s_ii = 5, negative cosine -1 -> -5 + (-5); var term (0 + 1 - 1e-4) / 2; cov 0.
    expected = -2 / TAU + 25 * (1 - 1e-4) / 2
    assert LOSSES["contrastive-vc"](z, z).item() == pytest.approx(expected)


def test_uniformity_closed_form() -> None:
    eye = t([[1, 0], [0, 1]])
    # one pair at squared distance 2: U = -4 per view; aligned views.
    assert LOSSES["uniformity"](eye, eye).item() == pytest.approx(-8.0)
    # swapped views: every positive at squared distance 2.
    assert LOSSES["uniformity"](eye, eye.flip(0)).item() == pytest.approx(2.0 - 8.0)
    z = t([[1, 0], [0, 1], [-1, 0]])
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity_loss(z).item() == pytest.approx(expected)


def test_byol_closed_form() -> None:
    q = t([[1, 0], [0, 3]])
    assert byol_loss(q, q, 2 * q, q).item() == pytest.approx(0.0)
    # normalised q1 = e0, t2 = e1: squared error 2 over d = 2 entries, per row.
    e0, e1 = t([[1, 0], [1, 0]]), t([[0, 2], [0, 2]])
    assert byol_loss(e0, e0, e0, e1).item() == pytest.approx(0.5 * (1.0 + 0.0))


def test_byol_ema_rate_schedule() -> None:
    assert byol_ema_rate(0, 100) == pytest.approx(0.99)
    assert byol_ema_rate(50, 100) == pytest.approx(0.995)
    assert byol_ema_rate(100, 100) == pytest.approx(1.0)
    assert byol_ema_rate(500, 100) == pytest.approx(1.0)
    assert byol_ema_rate(25, 100, base=0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    with pytest.raises(ConfigError):
        byol_ema_rate(0, 0)


def test_ema_update_parameters_and_buffers() -> None:
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    online(torch.randn(5, 3))  # moves the running statistics and the batch counter
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, 0.9)
    after, src = target.state_dict(), online.state_dict()
    for key, value in after.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * before[key] + 0.1 * src[key])
        else:
            assert torch.equal(value, src[key])
    assert after["1.num_batches_tracked"].item() == 1
    with pytest.raises(ConfigError):
        ema_update(torch.nn.Linear(3, 2), torch.nn.Linear(3, 3), 0.9)


# --- naive loop implementations on random inputs ----------------------------------------


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def naive_contrastive(z1: torch.Tensor, z2: torch.Tensor, max_negatives: int) -> float:
    a, b = z1.tolist(), z2.tolist()
    n = len(a)
    m = min(n - 1, max_negatives)
    total = 0.0
    for i in range(n):
        negatives = [(i + 1 + k) % n for k in range(m)]
        denominator = sum(math.exp(cos(a[i], b[j]) / TAU) for j in negatives)
        total += -cos(a[i], b[i]) / TAU + math.log(denominator)
    return total / n


def naive_variance(z: torch.Tensor) -> float:
    rows = z.tolist()
    n, d = len(rows), len(rows[0])
    out = 0.0
    for k in range(d):
        mean = sum(r[k] for r in rows) / n
        var = sum((r[k] - mean) ** 2 for r in rows) / (n - 1)
        out += max(0.0, 1 - math.sqrt(var + 1e-8))
    return out / d


def naive_covariance(z: torch.Tensor) -> float:
    rows = z.tolist()
    n, d = len(rows), len(rows[0])
    means = [sum(r[k] for r in rows) / n for k in range(d)]
    out = 0.0
    for p in range(d):
        for q in range(d):
            if p != q:
                c = sum((r[p] - means[p]) * (r[q] - means[q]) for r in rows) / (n - 1)
                out += c * c
    return out / d


def naive_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    pairs = [(x, y) for ra, rb in zip(a.tolist(), b.tolist()) for x, y in zip(ra, rb)]
    return sum((x - y) ** 2 for x, y in pairs) / len(pairs)


def naive_uniformity(z: torch.Tensor) -> float:
    rows = z.tolist()
    n = len(rows)
    values = [
        math.exp(-2 * sum((x - y) ** 2 for x, y in zip(rows[i], rows[j]))) for i in range(n) for j in range(i + 1, n)
    ]
    return math.log(sum(values) / len(values))


def normalise(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True)


@pytest.fixture
def views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    z1 = normalise(torch.randn(9, 5, generator=g, dtype=torch.float64))
    z2 = normalise(z1 + 0.5 * torch.randn(9, 5, generator=g, dtype=torch.float64))
    return z1, z2


def test_contrastive_matches_loops(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    assert decoupled_contrastive_loss(z1, z2).item() == pytest.approx(naive_contrastive(z1, z2, 250))
    # fewer negatives than items: the cyclic window of the 3 following items
    assert decoupled_contrastive_loss(z1, z2, max_negatives=3).item() == pytest.approx(naive_contrastive(z1, z2, 3))
    symmetric = (naive_contrastive(z1, z2, 250) + naive_contrastive(z2, z1, 250)) / 2
    assert decoupled_contrastive_loss(z1, z2, symmetric=True).item() == pytest.approx(symmetric)


def test_negative_window_at_paper_size() -> None:
    idx = negative_indices(280, 250)
    assert idx.shape == (280, 250)
    assert not (idx == torch.arange(280).unsqueeze(1)).any()
    assert torch.equal(torch.bincount(idx.flatten()), torch.full((280,), 250))
    assert idx[279, :3].tolist() == [0, 1, 2]


def test_vicreg_and_vc_match_loops(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    var = (naive_variance(z1) + naive_variance(z2)) / 2
    cov = naive_covariance(z1) + naive_covariance(z2)
    assert LOSSES["vicreg"](z1, z2).item() == pytest.approx(25 * naive_mse(z1, z2) + 25 * var + 100 * cov)
    expected_vc = naive_contrastive(z1, z2, 250) + 25 * var + 100 * cov
    assert LOSSES["contrastive-vc"](z1, z2).item() == pytest.approx(expected_vc)


def test_uniformity_matches_loops(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    align = sum(sum((x - y) ** 2 for x, y in zip(a, b)) for a, b in zip(z1.tolist(), z2.tolist())) / len(z1)
    expected = align + naive_uniformity(z1) + naive_uniformity(z2)
    assert LOSSES["uniformity"](z1, z2).item() == pytest.approx(expected)


def test_byol_matches_loops(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    q1, q2, t1, t2 = 2 * z2, 3 * z1, z1.flip(0), z2
    expected = 0.5 * (naive_mse(normalise(q1), normalise(t2)) + naive_mse(normalise(q2), normalise(t1)))
    assert byol_loss(q1, q2, t1, t2).item() == pytest.approx(expected)


# --- registry, errors, gradients --------------------------------------------------------


def test_ssl_loss_terms_sum_to_total(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    for method in LOSS_TERMS:
        loss, terms = ssl_loss(method, z1, z2)
        assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()))
        assert loss.item() == pytest.approx(LOSSES[method](z1, z2).item())
        assert all(not v.requires_grad for v in terms.values())


def test_ssl_loss_rejects_bad_requests(views: tuple[torch.Tensor, torch.Tensor]) -> None:
    z1, z2 = views
    with pytest.raises(ConfigError, match="byol_loss"):
        ssl_loss("byol", z1, z2)
    with pytest.raises(ConfigError, match="temperature"):
        ssl_loss("vicreg", z1, z2, temperature=0.1)
    with pytest.raises(ConfigError, match="shapes"):
        ssl_loss("contrastive", z1, z2[:4])
    with pytest.raises(ConfigError, match="batch size"):
        ssl_loss("vicreg", z1[:1], z2[:1])


def test_uniformity_gradient_finite_for_identical_rows() -> None:
    z = torch.tensor([[0.6, 0.8], [0.6, 0.8], [1.0, 0.0]], requires_grad=True)
    uniformity_loss(z).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("method", sorted(LOSS_TERMS))
def test_sgd_decreases_loss_and_aligns_positives(method: str) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(16, 8, generator=g).requires_grad_()
    b = torch.randn(16, 8, generator=g).requires_grad_()
    opt = torch.optim.SGD([a, b], lr=0.5)

    def state() -> tuple[float, float]:
        z1, z2 = normalise(a), normalise(b)
        return LOSSES[method](z1, z2).item(), (z1 * z2).sum(1).mean().item()

    loss0, align0 = state()
    for _ in range(30):
        opt.zero_grad()
        LOSSES[method](normalise(a), normalise(b)).backward()
        opt.step()
    loss1, align1 = state()
    assert loss1 < loss0 - 0.05 * abs(loss0)
    assert align1 > align0 + 0.3


def test_byol_sgd_moves_predictions_to_targets() -> None:
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 8, 4, generator=g).requires_grad_()
    targets = torch.randn(2, 8, 4, generator=g).requires_grad_()
    # the mean over N * d entries makes the gradient small, hence the large step
    opt = torch.optim.SGD([q], lr=30.0)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = byol_loss(q[0], q[1], targets[0], targets[1])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    assert targets.grad is None
