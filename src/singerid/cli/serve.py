"""singerid serve: the REST API and web page over a model and a catalogue."""

from __future__ import annotations

import argparse

from ._common import MODEL_HELP

NAME = "serve"
ORDER = 57
HELP = "run the REST API (/v1, OpenAPI at /docs) and the web page (/) over a model and a catalogue"
EXAMPLE = "singerid serve --model runs/demo/latest/train/model --catalog runs/cat"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..serve.settings import (
        DEFAULT_HOST,
        DEFAULT_MAX_SECONDS,
        DEFAULT_MAX_UPLOAD_MB,
        DEFAULT_PORT,
        DEFAULT_QUEUE,
        MAX_WORKERS_DEFAULT,
    )

    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--catalog", required=True, help="catalogue folder the service enrolls into and searches (created if missing)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}; any other needs --token-file)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--token-file", default=None,
        help="file holding a secret token; requests that change the catalogue then need 'Authorization: Bearer <token>'",
    )
    parser.add_argument(
        "--workers", type=int, default=0,
        help=f"inference processes, each holding the model (default: one per core, at most {MAX_WORKERS_DEFAULT})",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads per inference process (default: cores / workers)")
    parser.add_argument(
        "--queue", type=int, default=DEFAULT_QUEUE,
        help=f"model requests that may wait for a free process; more get 503 + Retry-After (default: {DEFAULT_QUEUE})",
    )
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help=f"largest request body in MB; larger get 413 (default: {DEFAULT_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help=f"longest recording accepted in seconds; longer get 422 (default: {DEFAULT_MAX_SECONDS:g})")
    parser.add_argument("--backend", default=None, help="catalogue search backend: exact, faiss, qdrant or qdrant:URL (default: the catalogue's own)")
    parser.add_argument("--device", default="cpu", help="torch device of the inference processes, e.g. cpu or cuda (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    try:
        import uvicorn

        from ..serve.app import Service, create_app
    except ImportError as exc:
        raise ConfigError(f"the service needs its extra: pip install 'singerid[serve]' ({exc}).") from exc
    from ..serve.settings import ServeSettings, read_token

    settings = ServeSettings(
        model=args.model, catalog=args.catalog, host=args.host, port=args.port,
        token=read_token(args.token_file) if args.token_file else None,
        workers=args.workers, threads=args.threads, queue=args.queue,
        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds, device=args.device, backend=args.backend,
    )
    service = Service(settings)
    print(f"singerid serve: model {service.model['fingerprint'][:12]} in {settings.workers} process(es), "
          f"catalogue {settings.catalog}; open http://{settings.host}:{settings.port}/", flush=True)
    uvicorn.run(create_app(service=service), host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=10)
    return 0
