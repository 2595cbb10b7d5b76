"""Catalogue store, search backends and clustering at scale, on synthetic vectors.

Vectors are ``DIM``-d, drawn around one seeded centre per "singer" (``PER_SINGER`` recordings
each), like recordings of many singers. Measured:

- store: adding 100k vectors (in transactions of ``ADD_BATCH``) against writing the same array
  with ``np.save`` + fsync (the baseline), and opening the catalogue (open + first search);
- search p50/p95 per single query at 10k, 100k and 1M vectors, exact (numpy) and approximate
  (faiss IVF, the ``faiss`` backend's defaults), with the approximate backend's recall@10
  against exact and its speed-up; at 1M also recall at other probe fractions (the trade-off);
- peak resident memory after each stage;
- clustering (``cluster_embeddings`` with the automatic silhouette cut) at 1k, 5k and 20k
  recordings, with the log-log growth exponent.

Quick mode uses tiny sizes (a smoke test, not a measurement).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import linear_fit
from singerid.catalog import Catalog
from singerid.catalog.backends import faiss as faiss_backend
from singerid.catalog.backends import make_backend
from singerid.eval.clustering import cluster_embeddings
from singerid.vectors import l2_normalize

DIM = 128
PER_SINGER = 20
NOISE = 0.8
"""Spread of a singer's recordings around the singer's centre (relative to the centre's norm)."""
ADD_BATCH = 1000
QUERIES = 200
SEED = 0


def synthetic(n: int, seed: int = SEED, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors around ``n / PER_SINGER`` seeded centres, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // PER_SINGER), DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        owner = rng.integers(0, len(centres), m)
        out[i : i + m] = l2_normalize(centres[owner] + NOISE * rng.standard_normal((m, DIM)).astype(np.float32))
    return out


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` catalogue vectors and ``QUERIES`` query vectors: other recordings of the same singers."""
    x = synthetic(n + QUERIES)
    return x[:n], x[n:]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _records(start: int, n: int) -> list[dict]:
    return [{"path": f"/collection/{i:07d}.wav", "singer": None} for i in range(start, start + n)]


def store_benchmark(n: int, folder: Path) -> dict:
    """Seconds to add ``n`` vectors (transactions of ``ADD_BATCH``) vs ``np.save`` + fsync, and to open."""
    x, queries = data(n)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(folder / "baseline.npy", "wb") as f:
        np.save(f, x)
        f.flush()
        os.fsync(f.fileno())
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    with Catalog.create(folder / "cat", "bench", DIM) as cat:
        for i in range(0, n, ADD_BATCH):
            cat.add_vectors(x[i : i + ADD_BATCH], _records(i, min(ADD_BATCH, n - i)))
    add = time.perf_counter() - start
    q = queries[0]
    start = time.perf_counter()
    with Catalog.open(folder / "cat", readonly=True) as cat:
        opened = time.perf_counter() - start
        cat.search(q, k=10)
        first = time.perf_counter() - start
        latency = _latency(lambda v: cat.search(v, k=10), queries)
    return {
        "n": n, "add_s": add, "adds_per_s": n / add, "baseline_npsave_s": baseline,
        "add_vs_baseline": add / baseline, "open_s": opened, "open_and_first_search_s": first,
        "catalog_search_ms": latency, "peak_rss_mb": peak_mb(),
    }  # fmt: skip


def _latency(fn, queries: np.ndarray) -> dict:
    times = []
    for v in queries:
        start = time.perf_counter()
        fn(v)
        times.append(time.perf_counter() - start)
    ms = 1000 * np.array(times)
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "queries": len(ms)}


def search_benchmark(n: int, folder: Path, probe_fractions: tuple[float, ...] = ()) -> dict:
    """Exact vs faiss at ``n`` vectors: p50/p95 per query, build time, recall@10 of faiss."""
    x, queries = data(n)
    ids = np.arange(n, dtype=np.int64)
    exact = make_backend("exact", folder, "recording", DIM)
    exact.sync(ids, x, 1)
    _, truth = exact.search(queries, 10)
    row: dict = {"n": n, "exact_ms": _latency(lambda v: exact.search(v[None], 10), queries)}
    start = time.perf_counter()
    approx = make_backend("faiss", folder, "recording", DIM)
    approx.sync(ids, x, 1)
    row["faiss_build_s"] = time.perf_counter() - start
    row["faiss_index"] = type(approx.index).__name__
    row["faiss_ms"] = _latency(lambda v: approx.search(v[None], 10), queries)
    _, found = approx.search(queries, 10)
    row["faiss_recall_at_10"] = _recall(found, truth)
    row["faiss_speedup_p50"] = row["exact_ms"]["p50"] / row["faiss_ms"]["p50"]
    if hasattr(approx.index, "nprobe"):
        row["faiss_lists"] = int(approx.index.nlist)
        row["faiss_nprobe"] = int(approx.index.nprobe)
        default = approx.index.nprobe
        trade = {}
        for fraction in probe_fractions:
            approx.index.nprobe = max(1, int(np.ceil(fraction * approx.index.nlist)))
            _, found = approx.search(queries, 10)
            trade[str(fraction)] = {"recall_at_10": _recall(found, truth), "ms": _latency(lambda v: approx.search(v[None], 10), queries[:50])}
        approx.index.nprobe = default
        if trade:
            row["probe_fraction_tradeoff"] = trade
    row["peak_rss_mb"] = peak_mb()
    return row


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


def clustering_benchmark(sizes: tuple[int, ...]) -> dict:
    seconds, rows = [], []
    for n in sizes:
        x = synthetic(n, seed=SEED + 2)
        start = time.perf_counter()
        result = cluster_embeddings(x, seed=SEED)
        seconds.append(time.perf_counter() - start)
        rows.append({"n": n, "seconds": seconds[-1], "clusters": result.n_clusters, "true_singers": n // PER_SINGER, "peak_rss_mb": peak_mb()})
    return {"rows": rows, "fit": linear_fit(list(sizes), seconds) if len(sizes) > 2 else None}


def _stage(name: str, result):
    """Print each stage's numbers as it finishes (the largest sizes take long)."""
    print(f"[bench] catalog {name}: {json.dumps(result)}", flush=True)
    return result


def run(quick: bool = False) -> dict:
    store_n = 2000 if quick else 100_000
    search_sizes = (2000, 20_000) if quick else (10_000, 100_000, 1_000_000)
    cluster_sizes = (100, 200, 400) if quick else (1000, 5000, 20_000)
    out: dict = {
        "settings": {"dim": DIM, "per_singer": PER_SINGER, "noise": NOISE, "add_batch": ADD_BATCH, "queries": QUERIES,
                     "faiss_probe_fraction": faiss_backend.PROBE_FRACTION, "quick": quick},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out["store"] = _stage("store", store_benchmark(store_n, folder / "store"))
        out["clustering"] = _stage("clustering", clustering_benchmark(cluster_sizes))
        out["search"] = []
        for n in search_sizes:
            sub = folder / f"search{n}"
            sub.mkdir()
            trade = (1 / 32, 1 / 16, 1 / 8, 1 / 4) if n == search_sizes[-1] else ()
            out["search"].append(_stage(f"search {n}", search_benchmark(n, sub, probe_fractions=trade)))
    return out
