"""The FastAPI application: REST API under ``/v1``, ``/health``, ``/metrics`` and the web page at ``/``.

:func:`create_app` builds it from :class:`~singerid.serve.settings.ServeSettings`; the model runs in
an :class:`~singerid.serve.pool.InferencePool`, the catalogue in the web process
(:class:`~singerid.serve.store.ServiceCatalog`).
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
)
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..catalog import CatalogError
from ..errors import ConfigError, SingerIdError
from ..model.calibration import decision_threshold
from ..profiles import UNKNOWN
from . import pool as jobs
from . import schemas
from .limits import INFERENCE_PATHS, Admission, BodyLimit, Gate, bearer_check
from .metrics import Metrics, MetricsMiddleware
from .pool import InferencePool, PoolBroken
from .settings import DEFAULT_SEARCH_K, DEFAULT_TOP, MAX_RESULTS, ServeSettings
from .store import ServiceCatalog, check_singer_name
from .uploads import UploadDir, UploadError, public_message

KNOWN_PATHS = frozenset({*INFERENCE_PATHS, "/v1/singers", "/v1/map", "/health", "/metrics", "/"})
Audio = Annotated[UploadFile, File(description="a recording in any format singerid reads (WAV, FLAC, OGG, MP3, ...)")]
ERRORS = {status: {"model": schemas.Problem} for status in (401, 403, 409, 413, 422, 503)}


class Service:
    """What one running service holds: settings, the inference pool (started, model loaded), the
    catalogue and the upload folder. Model errors surface here, before the service listens."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.pool = InferencePool(settings.model, settings.workers, settings.threads, settings.device, settings.max_seconds)
        try:
            self.model = self.pool.start()
            self.catalog = ServiceCatalog(settings.catalog, self.model["fingerprint"], self.model["dim"], settings.backend)
        except BaseException:
            self.pool.close()
            raise
        self.uploads = UploadDir(settings.max_seconds)

    def close(self) -> None:
        self.pool.close()
        self.catalog.close()
        self.uploads.close()

    def decide(self, threshold: float | None, seconds: tuple[float, float]) -> tuple[float | None, str]:
        return decision_threshold(self.model["calibration"], threshold, seconds)


def _problem(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_app(settings: ServeSettings | None = None, service: Service | None = None) -> FastAPI:
    """The application for ``settings`` (its service starts with the app), or around a started ``service``."""
    if (settings is None) == (service is None):
        raise ConfigError("give create_app either settings or a started service.")
    settings = settings or service.settings
    holder: dict[str, Service] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        holder["service"] = service or await asyncio.to_thread(Service, settings)
        app.state.service = holder["service"]
        try:
            yield
        finally:
            holder["service"].close()

    app = FastAPI(
        title="singerid",
        version=__version__,
        description="Singer identity: embed, verify, identify and search recordings; enroll singers; map the catalogue.",
        lifespan=lifespan,
    )

    def svc() -> Service:
        return holder["service"]

    gate, metrics = Gate(settings.capacity, settings.workers), Metrics()
    app.state.gate, app.state.metrics = gate, metrics
    # Middleware added last runs first: metrics see every request, the body cap acts before admission.
    app.add_middleware(Admission, gate=gate)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=KNOWN_PATHS)

    @app.exception_handler(SingerIdError)
    async def _user_error(request: Request, exc: SingerIdError):
        if isinstance(exc, PoolBroken):
            return _problem(503, str(exc), {"Retry-After": "5"})
        status = 409 if isinstance(exc, CatalogError) else 422
        return _problem(status, public_message(exc, []))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _problem(422, f"{where or 'request'}: {first.get('msg', 'invalid')}.")

    auth = Depends(bearer_check(settings.token))
    _routes(app, svc, auth, gate, metrics)
    static = resources.files("singerid.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    return app


async def _measure(service: Service, uploads, windows: bool = False) -> list[dict]:
    """Run the model on each upload (in parallel across the pool); errors name the client's files."""
    try:
        return list(await asyncio.gather(*(service.pool.run(jobs.measure, str(u.path), windows) for u in uploads)))
    except PoolBroken:
        raise
    except SingerIdError as exc:
        raise UploadError(public_message(exc, uploads)) from exc


def _routes(app: FastAPI, svc, auth, gate: Gate, metrics: Metrics) -> None:
    @app.post("/v1/embed", response_model=schemas.Embedding, responses=ERRORS, tags=["model"])
    async def embed(audio: Audio, windows: Annotated[bool, Form(description="also return one vector per window")] = False):
        """One recording -> its L2-normalised embedding (and, on request, per-window vectors)."""
        service = svc()
        async with service.uploads.saved([audio]) as ups:
            (m,) = await _measure(service, ups, windows)
        out = {"file": ups[0].name, "dim": len(m["embedding"]), "seconds": m["seconds"], "embedding": m["embedding"].tolist(), "quality": m["quality"]}
        if windows:
            w = m["windows"]
            out["windows"] = [
                {"start": float(s), "end": float(e), "embedding": v.tolist()} for v, s, e in zip(w["embeddings"], w["starts"], w["ends"])
            ]
        return out

    @app.post("/v1/verify", response_model=schemas.Verification, responses=ERRORS, tags=["model"])
    async def verify(
        a: Audio,
        b: Audio,
        threshold: Annotated[float | None, Form(description="decide at this cosine score instead of the calibrated threshold")] = None,
    ):
        """Two recordings -> score, and the decision at the calibrated threshold for their lengths (or a given one)."""
        service = svc()
        async with service.uploads.saved([a, b]) as ups:
            try:
                result = await service.pool.run(jobs.verify, str(ups[0].path), str(ups[1].path), threshold)
            except PoolBroken:
                raise
            except SingerIdError as exc:
                raise UploadError(public_message(exc, ups)) from exc
        return {**result, "files": [u.name for u in ups]}

    @app.post("/v1/identify", response_model=schemas.Identification, responses=ERRORS, tags=["catalogue"])
    async def identify(
        audio: Audio,
        threshold: Annotated[float | None, Form(description="accept the best singer at this cosine score")] = None,
        top: Annotated[int, Form(ge=1, le=MAX_RESULTS, description="how many ranked singers to return")] = DEFAULT_TOP,
    ):
        """One recording -> enrolled singers ranked by score; the best is named only when it reaches the threshold."""
        service = svc()
        async with service.uploads.saved([audio]) as ups:
            (m,) = await _measure(service, ups)
        hits, enrolled = await asyncio.to_thread(service.catalog.rank_singers, m["embedding"], top)
        thr, source = service.decide(threshold, (m["seconds"], enrolled or m["seconds"]))
        if thr is None:
            raise ConfigError("the model carries no calibration, so 'unknown' cannot be decided; give a threshold.")
        singer = hits[0].singer if hits[0].score >= thr else UNKNOWN
        return {
            "singer": singer, "threshold": thr, "threshold_source": source, "seconds": m["seconds"], "quality": m["quality"],
            "matches": [{"name": h.singer, "score": h.score} for h in hits],
        }

    @app.post("/v1/search", response_model=schemas.Neighbours, responses=ERRORS, tags=["catalogue"])
    async def search(
        audio: Audio,
        k: Annotated[int, Form(ge=1, le=MAX_RESULTS, description="how many recordings to return")] = DEFAULT_SEARCH_K,
    ):
        """One recording -> the nearest catalogued recordings, best first."""
        service = svc()
        async with service.uploads.saved([audio]) as ups:
            (m,) = await _measure(service, ups)
        found = await asyncio.to_thread(service.catalog.search, m["embedding"], k)
        hits = [
            {"id": h.record_id, "name": _name(r.path), "singer": r.singer, "score": h.score, "start": h.start, "end": h.end}
            for h, r in found
        ]
        return {"hits": hits, "seconds": m["seconds"], "quality": m["quality"]}

    @app.post("/v1/enroll", response_model=schemas.Enrolment, responses=ERRORS, tags=["catalogue"], dependencies=[auth])
    async def enroll(
        singer: Annotated[str, Form(description="the singer's name")],
        audio: Annotated[list[UploadFile], File(description="one or more recordings of this singer")],
    ):
        """A singer's name and recordings -> catalogue entries (one transaction)."""
        service = svc()
        name = check_singer_name(singer)
        async with service.uploads.saved(audio) as ups:
            measured = await _measure(service, ups)
            return await asyncio.to_thread(service.catalog.enroll, name, ups, measured)

    @app.get("/v1/singers", response_model=schemas.Singers, tags=["catalogue"])
    async def singers():
        """Enrolled singers with their number of recordings and seconds of audio."""
        return {"singers": await asyncio.to_thread(svc().catalog.singers)}

    @app.delete("/v1/singers/{name}", response_model=schemas.Removal, responses=ERRORS, tags=["catalogue"], dependencies=[auth])
    async def delete_singer(name: str):
        """Remove a singer and all their recordings."""
        removed = await asyncio.to_thread(svc().catalog.remove_singer, name)
        if not removed:
            raise HTTPException(404, f"no singer named {name[:60]!r} is enrolled; GET /v1/singers lists them.")
        return {"singer": name, "removed": removed}

    @app.get("/v1/map", response_model=schemas.CatalogMap, tags=["catalogue"])
    async def catalog_map():
        """2-D coordinates of every catalogued recording (first two principal components), for plotting."""
        records, xy = await asyncio.to_thread(svc().catalog.map)
        points = [
            {"id": r.id, "x": float(x), "y": float(y), "singer": r.singer, "name": _name(r.path), "audio": f"/v1/recordings/{r.id}/audio"}
            for r, (x, y) in zip(records, xy)
        ]
        return {"method": "pca", "points": points}

    @app.get("/v1/recordings/{record_id}/audio", responses={404: {"model": schemas.Problem}}, tags=["catalogue"])
    async def recording_audio(record_id: int):
        """The audio file of a catalogued recording (to play it)."""
        try:
            path = await asyncio.to_thread(svc().catalog.audio_file, record_id)
        except CatalogError:
            path = None
        if path is None:
            raise HTTPException(404, f"no playable file for recording {record_id}.")
        return FileResponse(path, filename=path.name)

    @app.get("/health", response_model=schemas.Health, tags=["service"])
    async def health():
        """Liveness and what this service runs."""
        service = svc()
        return {
            "status": "ok", "model": service.model["fingerprint"], "dim": service.model["dim"],
            "calibrated": service.decide(None, (4.0, 4.0))[1] == "calibration",
            "catalog": await asyncio.to_thread(service.catalog.info),
            "workers": service.settings.workers, "busy": gate.active, "capacity": gate.capacity,
        }

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def prometheus():
        """Prometheus text format: requests, errors and latency per endpoint; pool use."""
        extra = [
            ("singerid_inflight_requests", "gauge", "model requests running or queued", gate.active),
            ("singerid_capacity_requests", "gauge", "model requests admitted at once", gate.capacity),
            ("singerid_busy_rejections_total", "counter", "model requests refused with 503 because the pool was full", gate.rejected),
        ]
        return PlainTextResponse(metrics.render(extra), media_type="text/plain; version=0.0.4")


def _name(path: str | None) -> str:
    return Path(path or "").name
