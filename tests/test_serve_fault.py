"""Kill test: SIGKILL the server during an enrolment, restart it, and find every answered enrolment
whole, the interrupted one whole or absent, and the catalogue readable."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from serve_helpers import Server, write_voice

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _enroll(url: str, singer: str, files: list[Path]) -> httpx.Response:
    parts = [("audio", (f.name, f.read_bytes())) for f in files]
    return httpx.post(url + "/v1/enroll", data={"singer": singer}, files=parts, timeout=120)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the inference processes")
def test_sigkill_during_enroll_loses_no_answered_enrolment(voice_model, tmp_path):
    from singerid.catalog import Catalog

    catalog = tmp_path / "cat"
    clips = [write_voice(tmp_path / f"clip{i}.wav", ("alto", "tenor", "soprano")[i % 3], 300 + i, 4.0) for i in range(12)]
    answered: dict[str, int] = {}
    interrupted = {}
    for round_, delay in enumerate((0.3, 1.2)):
        srv = Server(voice_model, catalog, tmp_path / "server.log").wait_ready()
        try:
            for i in range(2):
                name = f"singer{round_}{i}"
                r = _enroll(srv.url, name, clips[4 * round_ + i : 4 * round_ + i + 2])
                assert r.status_code == 200, r.text
                answered[name] = r.json()["recordings"]
            workers = _children(srv.proc.pid)
            victim = f"victim{round_}"
            interrupted[victim] = 4
            outcome = {}

            def enroll_victim():
                try:
                    outcome["r"] = _enroll(srv.url, victim, clips[8:12])
                except httpx.HTTPError as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=enroll_victim)
            thread.start()
            time.sleep(delay)
            srv.kill()
            thread.join(60)
            if "r" in outcome and outcome["r"].status_code == 200:
                answered[victim] = outcome["r"].json()["recordings"]  # it finished before the kill
            # The inference processes notice that the server died and exit by themselves.
            deadline = time.monotonic() + 20
            while any(_alive(p) for p in workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert workers and not any(_alive(p) for p in workers)
        finally:
            srv.stop()

    srv = Server(voice_model, catalog, tmp_path / "server.log").wait_ready()
    try:
        listed = {s["name"]: s["recordings"] for s in httpx.get(srv.url + "/v1/singers", timeout=30).json()["singers"]}
        assert httpx.post(srv.url + "/v1/identify", files={"audio": ("q.wav", clips[0].read_bytes())}, timeout=60).status_code == 200
    finally:
        srv.stop()
    for name, count in answered.items():
        assert listed.get(name) == count, (name, listed)
    for name, count in interrupted.items():
        assert listed.get(name, count) == count, f"{name} is partly enrolled: {listed.get(name)} of {count}"
    with Catalog.open(catalog, readonly=True) as cat:
        records = cat.records()
        assert len(records) == sum(listed.values()) == len(cat.vectors()[0])
        assert all(Path(r.path).is_file() for r in records)
    kept = [p for p in (catalog / "audio").rglob("*") if p.is_file()]
    assert len(kept) == len({r.path for r in records}), "files no entry refers to are removed at start"
    assert not any(p.name.endswith(".part") for p in kept)
    assert os.path.isdir(catalog)
