"""Embedding throughput for 4 s clips, and the speed of scoring trials and retrieval.

Encoders (random initialisation: speed does not depend on the weights): cpu_small and
efficientnet_b0 (quick mode: cpu_small only, batches of 1 and 2, one thread). Each is run as

- ``eager``: the PyTorch module under ``torch.no_grad()`` (the baseline, at batch 1, 1 thread),
- ``inference_mode``: the same under ``torch.inference_mode()``,
- ``channels_last``: inference mode with the backbone's weights in channels-last layout,
- ``torchscript`` and ``onnxruntime``: the files ``singerid export`` writes (ONNX with the
  factorised matmul DFT; ``onnxruntime_stft_op`` with the ONNX STFT operator of
  ``--onnx-stft onnx``; ``onnxruntime_conv`` with the conv1d STFT of ``--onnx-stft conv``),
- ``library``: ``SingerEncoder.embed``, which runs EfficientNet-B0 on the CPU in pieces of 4
  windows (what ``singerid embed`` does),

at batch 1 and 64 with 1 and 2 torch (or onnxruntime) threads. ``clips_per_s`` counts 4 s
clips, ``real_time_factor`` is compute time over audio time (lower is faster) and
``speedup`` is clips/s over the baseline's in the same run. ``clips_per_cpu_s`` divides by the
CPU time of all threads instead: on a shared machine it is the steadier figure, and with two
threads it shows how much work the second thread adds. On a CUDA machine fp32 and bf16
autocast (backbone only; the frontend stays fp32) are timed as well.

Scoring: cosine scores of 1M trials given as index pairs into 20k embeddings (1000-d),
vectorised (as given, and visited in enrolment order), against a per-trial Python loop and
the library's ``score_trials`` (which also maps segment ids to rows). Retrieval: top-10
cosine neighbours of 256 queries among 100k embeddings with faiss ``IndexFlatIP`` against a
numpy matmul + argpartition.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.common import time_call
from singerid.audio import SAMPLE_RATE
from singerid.eval.trials import Trial, score_trials
from singerid.export.formats import export_model, load_exported, parity_inputs
from singerid.infer import SingerEncoder
from singerid.model.artifact import Artifact, load_artifact, save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder, count_parameters

CLIP_SECONDS = 4.0
VARIANTS = (
    "eager", "inference_mode", "channels_last", "torchscript",
    "onnxruntime", "onnxruntime_stft_op", "onnxruntime_conv", "library",
)
ONNX_VARIANTS = {"onnxruntime": "matmul", "onnxruntime_stft_op": "onnx", "onnxruntime_conv": "conv"}
"""Each ONNX Runtime variant and the ``--onnx-stft`` its file is exported with."""


def _timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """``time_call`` statistics plus CPU seconds per timed call (all threads; unlike wall time,
    hardly affected by other processes competing for the cores)."""
    for _ in range(warmup):
        fn()
    cpu = time.process_time()
    stats = time_call(fn, repeats, warmup=0)
    stats["cpu_s_per_call"] = (time.process_time() - cpu) / repeats
    return stats


def _time_variant(build: Callable[[], Callable[[np.ndarray], object]], x: np.ndarray, repeats: int) -> dict:
    """Build a variant, time it on ``x``, and let it go (its runtime's threads with it)."""
    fn = build()
    # Two warm-up calls: TorchScript's profiling executor optimises on the second.
    return _timed(lambda: fn(x), repeats, warmup=2)


def _artifact(backbone: str, folder: Path) -> Artifact:
    torch.manual_seed(0)
    cfg = EncoderConfig(backbone=backbone)
    return load_artifact(save_artifact(folder / backbone, build_encoder(cfg), cfg))


def _runners(art: Artifact, folder: Path, threads: int) -> dict[str, Callable[[], Callable[[np.ndarray], object]]]:
    """Per variant, a factory of its function ``waveform batch (numpy) -> embeddings``.

    Each variant is built just before it is timed and dropped after: an idle onnxruntime session's
    spinning threads would otherwise steal the cores from the variants timed after it (measured:
    ``SingerEncoder.embed`` at batch 1 on 2 threads ran about 2x slower with sessions alive).
    """
    net = copy.deepcopy(art.net).eval()
    net_cl = copy.deepcopy(art.net).eval().to(memory_format=torch.channels_last)
    ts = folder / f"{art.config.backbone}.ts"
    onnx = {variant: folder / f"{art.config.backbone}-{stft}.onnx" for variant, stft in ONNX_VARIANTS.items()}
    if not ts.exists():
        export_model(art, ts, "torchscript", verify=False)
        for variant, stft in ONNX_VARIANTS.items():
            export_model(art, onnx[variant], "onnx", verify=False, onnx_stft=stft)
    encoder = SingerEncoder(art)

    def eager(x: np.ndarray):
        with torch.no_grad():
            return net(torch.from_numpy(x))

    def inference(x: np.ndarray):
        with torch.inference_mode():
            return net(torch.from_numpy(x))

    def channels_last(x: np.ndarray):
        with torch.inference_mode():
            return net_cl(torch.from_numpy(x))

    return {
        "eager": lambda: eager,
        "inference_mode": lambda: inference,
        "channels_last": lambda: channels_last,
        "torchscript": lambda: load_exported(ts),
        **{variant: (lambda path=path: load_exported(path, threads=threads)) for variant, path in onnx.items()},
        "library": lambda: (lambda x: encoder.embed(x, batch_size=len(x))),
    }


def bench_encoder(backbone: str, folder: Path, batches: tuple[int, ...], threads: tuple[int, ...], repeats: int) -> dict:
    """Throughput of every variant x batch x thread count; speed-ups against eager, batch 1, 1 thread."""
    art = _artifact(backbone, folder)
    clip = int(CLIP_SECONDS * SAMPLE_RATE)
    inputs = {b: parity_inputs(clip, b, seed=b) for b in batches}
    saved_threads = torch.get_num_threads()
    runs = []
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            runners = _runners(art, folder, n_threads)
            for batch in batches:
                for variant in VARIANTS:
                    stats = _time_variant(runners[variant], inputs[batch], repeats if batch == 1 else max(1, repeats // 2))
                    per_call = stats["median_s"]
                    runs.append({
                        "variant": variant, "batch": batch, "threads": n_threads,
                        "clips_per_s": batch / per_call,
                        "real_time_factor": per_call / (batch * CLIP_SECONDS),
                        "clips_per_cpu_s": batch / stats["cpu_s_per_call"],
                        **stats,
                    })
    finally:
        torch.set_num_threads(saved_threads)
    base = next(r for r in runs if (r["variant"], r["batch"], r["threads"]) == ("eager", batches[0], threads[0]))
    for r in runs:
        r["speedup"] = r["clips_per_s"] / base["clips_per_s"]
        r["cpu_efficiency_vs_baseline"] = r["clips_per_cpu_s"] / base["clips_per_cpu_s"]
    return {
        "parameters": count_parameters(art.net),
        "embedding_dim": art.config.embedding_dim,
        "baseline": f"eager fp32, batch {batches[0]}, {threads[0]} thread(s)",
        "baseline_clips_per_s": base["clips_per_s"],
        "runs": runs,
    }


def bench_gpu(backbone: str, folder: Path, batch: int, repeats: int) -> dict:
    """CUDA fp32 vs bf16 autocast (backbone only) at one batch size."""
    art = _artifact(backbone, folder)
    net = copy.deepcopy(art.net).cuda().eval()
    x = torch.from_numpy(parity_inputs(int(CLIP_SECONDS * SAMPLE_RATE), batch, seed=batch)).cuda()

    def fp32():
        with torch.inference_mode():
            net(x)
        torch.cuda.synchronize()

    def bf16():
        with torch.inference_mode():
            feats = net.frontend(x)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                net.backbone(feats)
        torch.cuda.synchronize()

    out = {"batch": batch, "device": torch.cuda.get_device_name(0)}
    for name, fn in (("fp32", fp32), ("bf16", bf16)):
        stats = _timed(fn, repeats, warmup=2)
        per_call = stats["median_s"]
        out[name] = {"clips_per_s": batch / per_call, "real_time_factor": per_call / (batch * CLIP_SECONDS), **stats}
    out["bf16_speedup"] = out["bf16"]["clips_per_s"] / out["fp32"]["clips_per_s"]
    return out


def _unit_rows(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.standard_normal((n, dim), dtype=np.float32)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def cosine_pairs(emb: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Cosine score of rows ``a[i]`` and ``b[i]`` of unit-norm ``emb``, in chunks that stay in cache."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = np.einsum("ij,ij->i", emb[a[s : s + chunk]], emb[b[s : s + chunk]])
    return out


def cosine_pairs_sorted(emb: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """:func:`cosine_pairs` with trials visited in enrolment order, so one side's rows repeat from cache."""
    order = np.argsort(a, kind="stable")
    out = np.empty(len(a), np.float32)
    out[order] = cosine_pairs(emb, a[order], b[order], chunk)
    return out


def bench_scoring(n_emb: int, dim: int, n_trials: int, n_loop: int, n_library: int, seed: int = 0) -> dict:
    """Trials scored per second: vectorised index pairs (as given, and sorted by enrolment row) vs a
    per-trial loop vs the library's ``score_trials``."""
    rng = np.random.default_rng(seed)
    emb = _unit_rows(n_emb, dim, rng)
    a, b = rng.integers(0, n_emb, n_trials), rng.integers(0, n_emb, n_trials)
    vec = _timed(lambda: cosine_pairs(emb, a, b), repeats=3)
    vec_sorted = _timed(lambda: cosine_pairs_sorted(emb, a, b), repeats=3)
    loop = _timed(lambda: [float(emb[i] @ emb[j]) for i, j in zip(a[:n_loop], b[:n_loop])], repeats=3)
    ids = [f"seg{i}" for i in range(n_emb)]
    trials = [Trial(ids[i], ids[j], False) for i, j in zip(a[:n_library], b[:n_library])]
    lib = _timed(lambda: score_trials(trials, ids, emb), repeats=3)
    want = score_trials(trials, ids, emb)
    check = max(
        np.max(np.abs(cosine_pairs(emb, a[:n_library], b[:n_library]) - want)),
        np.max(np.abs(cosine_pairs_sorted(emb, a[:n_library], b[:n_library]) - want)),
    )
    rates = {
        "per_trial_loop": n_loop / loop["median_s"],
        "vectorised_index_pairs": n_trials / vec["median_s"],
        "vectorised_sorted_by_enrolment": n_trials / vec_sorted["median_s"],
        "library_score_trials": n_library / lib["median_s"],
    }
    return {
        "embeddings": n_emb, "dim": dim, "trials": n_trials, "loop_trials": n_loop, "library_trials": n_library,
        "trials_per_s": rates,
        "speedup_vs_loop": {k: v / rates["per_trial_loop"] for k, v in rates.items()},
        "max_abs_diff_vectorised_vs_library": float(check),
        "timings": {"vectorised": vec, "vectorised_sorted": vec_sorted, "loop": loop, "library": lib},
    }


def bench_retrieval(n_gallery: int, dim: int, n_queries: int, k: int = 10, seed: int = 0) -> dict:
    """Top-``k`` cosine search: faiss IndexFlatIP vs numpy matmul + argpartition."""
    import faiss

    rng = np.random.default_rng(seed)
    gallery = _unit_rows(n_gallery, dim, rng)
    queries = _unit_rows(n_queries, dim, rng)
    index = faiss.IndexFlatIP(dim)
    index.add(gallery)

    def numpy_search() -> np.ndarray:
        scores = queries @ gallery.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    np_t = _timed(numpy_search, repeats=3)
    fa_t = _timed(lambda: index.search(queries, k), repeats=3)
    same = float(np.mean(np.sort(numpy_search(), axis=1) == np.sort(index.search(queries, k)[1], axis=1)))
    rates = {"numpy": n_queries / np_t["median_s"], "faiss": n_queries / fa_t["median_s"]}
    return {
        "gallery": n_gallery, "dim": dim, "queries": n_queries, "k": k,
        "faiss_threads": faiss.omp_get_max_threads(),
        "queries_per_s": rates,
        "faiss_speedup_vs_numpy": rates["faiss"] / rates["numpy"],
        "same_neighbours_fraction": same,
        "timings": {"numpy": np_t, "faiss": fa_t},
    }


def run(quick: bool = False) -> dict:
    backbones = ("cpu_small",) if quick else ("cpu_small", "efficientnet_b0")
    batches = (1, 2) if quick else (1, 64)
    threads = (1,) if quick else (1, 2)
    repeats = 1 if quick else 4
    result: dict = {"clip_seconds": CLIP_SECONDS, "quick": quick, "encoders": {}, "gpu": None}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for backbone in backbones:
            result["encoders"][backbone] = bench_encoder(backbone, folder, batches, threads, repeats)
        if torch.cuda.is_available():
            result["gpu"] = {b: bench_gpu(b, folder, batches[-1], repeats=3 if quick else 10) for b in backbones}
    if quick:
        result["scoring"] = bench_scoring(n_emb=2000, dim=1000, n_trials=20000, n_loop=2000, n_library=5000)
        result["retrieval"] = bench_retrieval(n_gallery=5000, dim=1000, n_queries=64)
    else:
        result["scoring"] = bench_scoring(n_emb=20000, dim=1000, n_trials=1_000_000, n_loop=20000, n_library=100_000)
        result["retrieval"] = bench_retrieval(n_gallery=100_000, dim=1000, n_queries=256)
    return result
