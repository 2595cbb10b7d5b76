"""The service under load: ``singerid serve`` on loopback against the same work done in-process.

A ``cpu_small`` model (the demo's architecture; random seeded weights, since speed does not depend
on them) with a fixed decision threshold, and 4 s clips of built-in voices. The load run: 8
concurrent clients alternate ``/v1/verify`` (two clips) and ``/v1/identify`` (one clip against the
enrolled singers) for a fixed number of requests (stopped early after ``TIME_LIMIT_S``), with the
server at its defaults (inference processes: one per core, at most 4). Reported: throughput,
p50/p95/p99 latency, errors (must be 0), the server's peak resident memory (web process plus
inference processes, sampled), and the ratio of service throughput to the in-process baseline:
the same requests as direct library calls (``SingerEncoder.verify``, ``SingerEncoder.identify``
against the catalogue's gallery) one after another in this process (half of the
requests), with torch's default threads and with one thread; the ratio is against the faster.

The overload run starts a server with one inference process and no queue and sends it more
concurrent clients than it can hold: some requests get 503 with ``Retry-After``, none fails
otherwise, and the server still answers ``/health`` afterwards.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CLIENTS = 8
CLIP_SECONDS = 4.0
TIME_LIMIT_S = 240.0
VOICES = ((180.0, 0.6), (230.0, 1.3), (290.0, 2.0), (140.0, 1.0))
SRC = Path(__file__).parents[1] / "src"


def _model(folder: Path) -> Path:
    import torch

    from singerid.model.artifact import save_artifact
    from singerid.model.backbones import EncoderConfig, build_encoder
    from singerid.model.calibration import Calibration

    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small")
    cal = Calibration(a=10.0, b=-5.0, thresholds={"eer": 0.5}).to_dict()
    return save_artifact(folder / "model", build_encoder(cfg).eval(), cfg, calibration=cal)


def _clips(folder: Path, n: int) -> list[Path]:
    from singerid.audio import write_audio
    from singerid.data.signals import voiced_clip

    paths = []
    for i in range(n):
        f0, slope = VOICES[i % len(VOICES)]
        paths.append(write_audio(folder / f"clip{i:02d}.wav", voiced_clip(f0 * (1 + 0.01 * (i // len(VOICES))), CLIP_SECONDS, slope, i)))
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (MB), from /proc."""
    total, stack = 0.0, [pid]
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            total += _rss_mb(p)
        except OSError:  # it exited meanwhile
            pass
    return total


class _Server:
    def __init__(self, model: Path, catalog: Path, *extra: str) -> None:
        import httpx

        self.url = f"http://127.0.0.1:{_free_port()}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "singerid", "serve", "--model", str(model), "--catalog", str(catalog),
               "--port", self.url.rsplit(":", 1)[1], *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        self.client = httpx.Client(timeout=300)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"singerid serve exited with {self.proc.returncode}")
            try:
                if self.client.get(self.url + "/health").status_code == 200:
                    break
            except Exception:
                time.sleep(0.3)
        self.peak_mb = _tree_rss_mb(self.proc.pid)
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling:
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(self.proc.pid))
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc.poll() is None and self.client.get(self.url + "/health").status_code == 200

    def stop(self) -> None:
        self._sampling = False
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.client.close()


def _requests(clips: list[Path], n: int) -> list[tuple]:
    """``n`` requests alternating verify (two clips) and identify (one clip), seeded."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a, b = rng.choice(len(clips), 2, replace=False)
        out.append(("verify", clips[a], clips[b]) if i % 2 == 0 else ("identify", clips[a]))
    return out


def _send(client, url: str, req: tuple):
    files = {"a": (req[1].name, req[1].read_bytes()), "b": (req[2].name, req[2].read_bytes())} if req[0] == "verify" else {
        "audio": (req[1].name, req[1].read_bytes())}
    return client.post(f"{url}/v1/{req[0]}", files=files)


def _load(server: _Server, reqs: list[tuple], clients: int) -> dict:
    import httpx

    latencies, statuses, retry_after = [], [], []
    deadline = time.monotonic() + TIME_LIMIT_S
    lock = threading.Lock()
    queue = list(reqs)

    def worker() -> None:
        with httpx.Client(timeout=300) as client:
            while time.monotonic() < deadline:
                with lock:
                    if not queue:
                        return
                    req = queue.pop()
                start = time.perf_counter()
                try:
                    r = _send(client, server.url, req)
                    status = r.status_code
                    if status == 503:
                        retry_after.append(r.headers.get("retry-after"))
                except httpx.HTTPError:
                    status = -1
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses.append(status)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - start
    ok = [t for t, s in zip(latencies, statuses) if s == 200]
    pct = {f"p{q}_s": float(np.percentile(ok, q)) if ok else None for q in (50, 95, 99)}
    return {
        "requests": len(statuses), "ok": len(ok), "wall_s": wall, "throughput_rps": len(ok) / wall,
        "errors": sum(s not in (200, 503) for s in statuses), "busy_503": statuses.count(503),
        "busy_with_retry_after": sum(1 for v in retry_after if v and v.isdigit() and int(v) >= 1), **pct,
    }


def _in_process(model: Path, catalog: Path, reqs: list[tuple], threads: int) -> dict:
    import torch

    from singerid.catalog import Catalog
    from singerid.infer import load_model

    torch.set_num_threads(threads)
    enc = load_model(model)
    with Catalog.open(catalog, readonly=True) as cat:
        gallery = cat.gallery()
        enc.verify(str(reqs[0][1]), str(reqs[0][2]))  # warm-up, as the server's processes are
        start = time.perf_counter()
        for req in reqs:
            if req[0] == "verify":
                enc.verify(str(req[1]), str(req[2]))
            else:
                enc.identify(str(req[1]), gallery)
        wall = time.perf_counter() - start
    return {"requests": len(reqs), "torch_threads": threads, "wall_s": wall, "throughput_rps": len(reqs) / wall}


def run(quick: bool = False) -> dict:
    import torch

    n = 16 if quick else 160
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        model = _model(root)
        clips = _clips(root, 8 if quick else 16)
        server = _Server(model, root / "cat")
        try:
            startup_mb = server.peak_mb
            for i, (f0, _) in enumerate(VOICES):
                mine = [c for j, c in enumerate(clips) if j % len(VOICES) == i][:2]
                r = server.client.post(server.url + "/v1/enroll", data={"singer": f"voice{i}"},
                                       files=[("audio", (c.name, c.read_bytes())) for c in mine])
                r.raise_for_status()
            reqs = _requests(clips, n)
            served = _load(server, reqs, CLIENTS)
            health = server.client.get(server.url + "/health").json()
            served.update(peak_rss_mb=server.peak_mb, idle_rss_mb=startup_mb, workers=health["workers"],
                          web_process_peak_rss_mb=_rss_mb(server.proc.pid, "VmHWM"))
        finally:
            server.stop()
        default_threads = torch.get_num_threads()
        half = reqs[: max(2, len(reqs) // 2)]
        library = [_in_process(model, root / "cat", half, t) for t in sorted({default_threads, 1})]
        torch.set_num_threads(default_threads)
        best = max(library, key=lambda r: r["throughput_rps"])
        overload_server = _Server(model, root / "cat", "--workers", "1", "--queue", "1")
        try:
            overload = _load(overload_server, _requests(clips, 24 if quick else 48), 3 * CLIENTS)
            overload["alive_after"] = overload_server.alive()
            overload.update(clients=3 * CLIENTS, workers=1, queue=1)
        finally:
            overload_server.stop()
    return {
        "clients": CLIENTS, "clip_seconds": CLIP_SECONDS,
        "service": served, "in_process": library,
        "service_vs_in_process": served["throughput_rps"] / best["throughput_rps"],
        "overload": overload,
    }
