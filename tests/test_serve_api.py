"""The REST API through FastAPI's test client: every endpoint, every error status, the token, and a
catalogue that outlives the application. Answers are checked against the library called directly."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import soundfile as sf

from singerid.errors import ConfigError
from singerid.serve.limits import BodyLimit
from singerid.serve.metrics import LATENCY_BUCKETS, Metrics
from singerid.serve.settings import ServeSettings, is_loopback, read_token

pytest.importorskip("fastapi")
from fastapi import HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import voice  # noqa: E402

from singerid.serve import create_app  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
MAX_SECONDS = 8.0
MAX_UPLOAD_MB = 1.0


def wav(x: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, 44100, format="WAV", subtype=subtype)
    return buf.getvalue()


def settings(model, catalog, **kw) -> ServeSettings:
    base = dict(model=str(model), catalog=catalog, token=TOKEN, workers=1, threads=1, queue=2,
                max_seconds=MAX_SECONDS, max_upload_mb=MAX_UPLOAD_MB)
    return ServeSettings(**{**base, **kw})


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(voice_model, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("api") / "cat"
    app = create_app(settings(voice_model, catalog))
    with TestClient(app) as client:
        yield client, app, catalog


@pytest.fixture(scope="module")
def encoder(voice_model):
    from singerid.infer import load_model

    return load_model(voice_model)


# -- settings and pieces that need no model ----------------------------------------------------
def test_settings_refuse_an_open_address_without_a_token_and_weak_tokens(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    with pytest.raises(ConfigError, match="token-file"):
        ServeSettings(model="m", catalog=tmp_path, host="0.0.0.0")
    assert ServeSettings(model="m", catalog=tmp_path, host="0.0.0.0", token=TOKEN).host == "0.0.0.0"
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(tmp_path / "short")
    (tmp_path / "good").write_text(f"  {TOKEN}\n")
    assert read_token(tmp_path / "good") == TOKEN
    s = ServeSettings(model="m", catalog=tmp_path, workers=2, queue=3)
    assert s.capacity == 5 and s.threads >= 1 and s.max_upload_bytes == 50 * 2**20


def test_metrics_histogram_is_cumulative_and_counts_errors():
    m = Metrics()
    for seconds, status in [(0.004, 200), (0.3, 200), (100.0, 422)]:
        m.observe("/v1/verify", "POST", status, seconds)
    text = m.render([("x_total", "counter", "help", 3)])
    assert 'singerid_request_seconds_bucket{endpoint="/v1/verify",le="0.005"} 1' in text
    assert 'singerid_request_seconds_bucket{endpoint="/v1/verify",le="0.5"} 2' in text
    assert f'le="{LATENCY_BUCKETS[-1]:g}"}} 2' in text and 'le="+Inf"} 3' in text
    assert 'singerid_request_errors_total{endpoint="/v1/verify",status="422"} 1' in text
    assert 'singerid_request_seconds_sum{endpoint="/v1/verify"} 100.304000' in text and "x_total 3" in text


def test_body_limit_cuts_off_a_streamed_upload_without_content_length():
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(len(message["body"]))
            if not message.get("more_body"):
                return

    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(3)]

    async def receive():
        return chunks.pop(0)

    limit = BodyLimit(app, max_bytes=1000)
    with pytest.raises(HTTPException) as exc:
        asyncio.run(limit({"type": "http", "headers": []}, receive, None))
    assert exc.value.status_code == 413 and seen == [600]


# -- the API -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_verify_decides_like_the_library(served, encoder, tmp_path):
    client, _, _ = served
    a, b, c = voice("alto", 1, 4.0), voice("alto", 2, 5.0), voice("soprano", 3, 4.0)
    same = client.post("/v1/verify", files={"a": ("a.wav", wav(a)), "b": ("b.wav", wav(b))})
    diff = client.post("/v1/verify", files={"a": ("a.wav", wav(a)), "b": ("c.wav", wav(c))})
    assert same.status_code == 200 and diff.status_code == 200
    same, diff = same.json(), diff.json()
    assert same["same_singer"] is True and diff["same_singer"] is False
    (tmp_path / "a.wav").write_bytes(wav(a))
    (tmp_path / "b.wav").write_bytes(wav(b))
    lib = encoder.verify(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert same["score"] == pytest.approx(lib.score, abs=1e-5) and same["threshold"] == pytest.approx(lib.threshold)
    assert same["threshold_source"] == "calibration" and same["probability"] == pytest.approx(lib.probability, abs=1e-5)
    assert same["seconds"] == pytest.approx([4.0, 5.0]) and same["files"] == ["a.wav", "b.wav"]
    given = client.post("/v1/verify", files={"a": ("a.wav", wav(a)), "b": ("b.wav", wav(b))}, data={"threshold": "1.01"}).json()
    assert given["same_singer"] is False and given["threshold"] == 1.01 and given["threshold_source"] == "given"


@pytest.mark.slow
def test_embed_returns_the_library_vectors_and_windows(served, encoder):
    client, _, _ = served
    x = voice("tenor", 4, 6.0)
    r = client.post("/v1/embed", files={"audio": ("t.wav", wav(x))}, data={"windows": "true"})
    assert r.status_code == 200
    body = r.json()
    audio, _ = sf.read(io.BytesIO(wav(x)), dtype="float32")
    lib = encoder.embed_windows(audio)
    assert body["dim"] == 32 and body["seconds"] == pytest.approx(6.0)
    assert np.allclose(body["embedding"], encoder.embed(audio)[0], atol=1e-5)
    assert len(body["windows"]) == len(lib.embeddings)
    assert [w["start"] for w in body["windows"]] == pytest.approx(lib.starts.tolist())
    assert np.allclose([w["embedding"] for w in body["windows"]], lib.embeddings, atol=1e-5)
    plain = client.post("/v1/embed", files={"audio": ("t.wav", wav(x))}).json()
    assert plain["windows"] is None


@pytest.mark.slow
def test_enroll_identify_search_map_delete(served, encoder):
    client, _, _ = served
    assert client.post("/v1/identify", files={"audio": ("q.wav", wav(voice("alto", 30)))}).status_code == 409
    alto = [wav(voice("alto", s)) for s in (10, 11)]
    files = [("audio", ("alto10.wav", alto[0])), ("audio", ("alto11.wav", alto[1]))]
    assert client.post("/v1/enroll", data={"singer": "Alto"}, files=files).status_code == 401
    bad = {"Authorization": "Bearer wrong-token-0000000000"}
    assert client.post("/v1/enroll", data={"singer": "Alto"}, files=files, headers=bad).status_code == 403
    r = client.post("/v1/enroll", data={"singer": "Alto"}, files=files, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["ids"]) == 2 and r.json()["recordings"] == 2
    again = client.post("/v1/enroll", data={"singer": "Alto"}, files=files[:1], headers=AUTH).json()
    assert again["ids"] == [] and again["skipped"] == ["alto10.wav"] and again["recordings"] == 2
    sop = client.post("/v1/enroll", data={"singer": "Soprano"}, files=[("audio", ("s.wav", wav(voice("soprano", 12))))], headers=AUTH)
    assert sop.status_code == 200
    reserved = client.post("/v1/enroll", data={"singer": "unknown"}, files=files[:1], headers=AUTH)
    assert reserved.status_code == 422 and "reserved" in reserved.json()["detail"]

    who = client.post("/v1/identify", files={"audio": ("q.wav", wav(voice("alto", 31, 5.0)))}).json()
    assert who["singer"] == "Alto" and [m["name"] for m in who["matches"]] == ["Alto", "Soprano"]
    assert who["threshold_source"] == "calibration"
    stranger = client.post("/v1/identify", files={"audio": ("q.wav", wav(voice("tenor", 32)))}).json()
    assert stranger["singer"] == "unknown" and stranger["matches"][0]["score"] < stranger["threshold"]

    query = voice("soprano", 33)
    hits = client.post("/v1/search", files={"audio": ("q.wav", wav(query))}, data={"k": "2"}).json()["hits"]
    assert [h["name"] for h in hits][0] == "s.wav" and len(hits) == 2
    vec = encoder.embed(sf.read(io.BytesIO(wav(query)), dtype="float32")[0])[0]
    assert hits[0]["score"] == pytest.approx(float(vec @ encoder.embed(voice("soprano", 12))[0]), abs=1e-3)

    singers = client.get("/v1/singers").json()["singers"]
    assert singers == [{"name": "Alto", "recordings": 2, "seconds": pytest.approx(8.0)},
                       {"name": "Soprano", "recordings": 1, "seconds": pytest.approx(4.0)}]
    points = client.get("/v1/map").json()["points"]
    assert len(points) == 3 and {p["singer"] for p in points} == {"Alto", "Soprano"}
    xy = {p["name"]: np.array([p["x"], p["y"]]) for p in points}
    # The two alto recordings lie close together and far from the soprano one.
    assert np.linalg.norm(xy["alto10.wav"] - xy["alto11.wav"]) < 0.2 * np.linalg.norm(xy["alto10.wav"] - xy["s.wav"])
    played = client.get(points[0]["audio"])
    assert played.status_code == 200 and played.content == alto[0]
    assert client.get("/v1/recordings/999/audio").status_code == 404

    assert client.delete("/v1/singers/Soprano").status_code == 401
    gone = client.delete("/v1/singers/Soprano", headers=AUTH)
    assert gone.status_code == 200 and gone.json() == {"singer": "Soprano", "removed": 1}
    assert client.delete("/v1/singers/Soprano", headers=AUTH).status_code == 404
    assert [p["singer"] for p in client.get("/v1/map").json()["points"]] == ["Alto", "Alto"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, payload, status, reason",
    [
        ("corrupt.wav", b"RIFF....not audio at all", 422, "cannot read audio"),
        ("empty.wav", b"", 422, "empty"),
        ("silent.wav", wav(np.zeros(44100 * 2, np.float32)), 422, "silent"),
        ("nan.wav", wav(np.full(44100 * 2, np.nan, np.float32), subtype="FLOAT"), 422, "NaN"),
        ("long.wav", wav(voice("alto", 40, MAX_SECONDS + 2)), 422, "longer than this service accepts"),
        ("big.wav", b"\0" * int(MAX_UPLOAD_MB * 2**20 + 10), 413, "larger than this service accepts"),
    ],
)
def test_bad_uploads_get_a_one_line_reason_and_the_service_keeps_serving(served, name, payload, status, reason):
    client, app, _ = served
    r = client.post("/v1/embed", files={"audio": (name, payload)})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert reason in detail and "\n" not in detail
    if status == 422:
        assert detail.startswith(name) and "/tmp" not in detail
    ok = client.post("/v1/embed", files={"audio": ("fine.wav", wav(voice("tenor", 41)))})
    assert ok.status_code == 200
    assert not any(app.state.service.uploads.root.iterdir())


@pytest.mark.slow
def test_a_full_pool_answers_503_with_retry_after(served):
    client, app, _ = served
    gate = app.state.gate
    gate.active = gate.capacity
    try:
        r = client.post("/v1/embed", files={"audio": ("x.wav", wav(voice("alto", 50)))})
    finally:
        gate.active = 0
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
    assert client.get("/v1/singers").status_code == 200  # reads need no place in the pool
    assert client.post("/v1/embed", files={"audio": ("x.wav", wav(voice("alto", 50)))}).status_code == 200


@pytest.mark.slow
def test_health_metrics_page_and_openapi(served):
    client, _, _ = served
    before = client.get("/metrics").text
    client.post("/v1/verify", files={"a": ("a.wav", b"")})  # missing field b -> 422
    text = client.get("/metrics").text

    def count(t, line):
        return sum(int(x.rsplit(" ", 1)[1]) for x in t.splitlines() if x.startswith(line))

    key = 'singerid_requests_total{endpoint="/v1/verify",method="POST",status="422"}'
    assert count(text, key) == count(before, key) + 1
    assert "singerid_request_seconds_bucket" in text and "singerid_capacity_requests 3" in text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["calibrated"] is True and health["dim"] == 32
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "https://" not in page.text
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    for path in ("/v1/embed", "/v1/verify", "/v1/identify", "/v1/search", "/v1/enroll", "/v1/singers", "/v1/singers/{name}", "/v1/map"):
        assert path in paths


@pytest.mark.slow
def test_the_catalogue_outlives_the_application(voice_model, tmp_path):
    catalog = tmp_path / "cat"
    with TestClient(create_app(settings(voice_model, catalog))) as client:
        r = client.post("/v1/enroll", data={"singer": "Tenor"}, files=[("audio", ("t.wav", wav(voice("tenor", 60))))], headers=AUTH)
        assert r.status_code == 200
    with TestClient(create_app(settings(voice_model, catalog))) as client:
        assert client.get("/v1/singers").json()["singers"][0]["name"] == "Tenor"
        who = client.post("/v1/identify", files={"audio": ("q.wav", wav(voice("tenor", 61)))}).json()
        assert who["singer"] == "Tenor"
        assert client.get(client.get("/v1/map").json()["points"][0]["audio"]).status_code == 200


@pytest.mark.slow
def test_two_services_share_one_catalogue_folder(voice_model, tmp_path):
    catalog = tmp_path / "cat"
    with TestClient(create_app(settings(voice_model, catalog))) as a, TestClient(create_app(settings(voice_model, catalog))) as b:
        assert b.get("/v1/singers").json()["singers"] == []
        files = [("audio", ("s.wav", wav(voice("soprano", 70))))]
        assert a.post("/v1/enroll", data={"singer": "Soprano"}, files=files, headers=AUTH).status_code == 200
        assert b.post("/v1/identify", files={"audio": ("q.wav", wav(voice("soprano", 71)))}).json()["singer"] == "Soprano"
        assert b.delete("/v1/singers/Soprano", headers=AUTH).json()["removed"] == 1
        assert a.get("/v1/singers").json()["singers"] == [] and a.get("/v1/map").json()["points"] == []
