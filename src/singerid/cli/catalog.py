"""singerid catalog: a lasting store of embeddings: add, search, remove, info, export."""

from __future__ import annotations

import argparse
import json

from ._common import add_model_option

NAME = "catalog"
ORDER = 76
HELP = "keep a growing catalogue of embeddings: `add` audio, `search` it by voice, `remove`, `info`, `export`"
EXAMPLE = (
    "singerid catalog add runs/demo/corpus/seed0/eval --layout folder --catalog runs/catalog --model runs/demo/latest/train/model"
    " && singerid catalog search runs/demo/corpus/seed0/eval/singer040/song01.wav --catalog runs/catalog --model runs/demo/latest/train/model"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..catalog.backends import BACKENDS
    from ..data.datasets import LAYOUTS

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, help="add, search, remove, info or export")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--catalog", required=True, help="catalogue folder")
        return p

    add = action("add", "embed audio files and folders into the catalogue (created on first use); resumable")
    add.add_argument("inputs", nargs="+", help="audio files, or folders searched recursively")
    add_model_option(add)
    add.add_argument("--layout", choices=LAYOUTS, default=None, help="label entries by singer from the folders' layout (e.g. folder: ROOT/<singer>/...)")
    add.add_argument("--singer", default=None, help="label every added file with this singer")
    add.add_argument("--windows", action="store_true", help="also keep every window's vector, to find where in a long recording a voice sings")
    add.add_argument("--skip-unreadable", action="store_true", help="skip files that cannot be read or embedded, and list them")
    add.add_argument("--backend", default="exact", help=f"search backend of a new catalogue: {', '.join(BACKENDS)} or qdrant:URL (default: exact)")
    add.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    search = action("search", "rank catalogue entries (or labelled singers) by similarity to a query recording")
    search.add_argument("query", help="query audio file")
    add_model_option(search)
    search.add_argument("-k", type=int, default=10, help="how many results (default: %(default)s)")
    search.add_argument("--by", choices=("recording", "singer"), default="recording", help="rank recordings or labelled singers (default: %(default)s)")
    search.add_argument("--windows", action="store_true", help="score each recording by its best window and show where it is")
    search.add_argument("--backend", default=None, help="search with this backend instead of the catalogue's own")
    search.add_argument("--json", action="store_true", help="print the result as one JSON object")

    remove = action("remove", "remove entries by id, path or singer")
    remove.add_argument("--id", type=int, action="append", dest="ids", help="entry id (repeatable)")
    remove.add_argument("--path", action="append", dest="paths", help="entry path (repeatable)")
    remove.add_argument("--singer", help="remove every entry with this singer label")

    info = action("info", "count entries and singers; show model, backend and size")
    info.add_argument("--list", action="store_true", help="also list every entry")
    info.add_argument("--json", action="store_true", help="print the information as one JSON object")

    export = action("export", "write every entry and its vector to an .npz or .parquet file")
    export.add_argument("--out", required=True, help="output file: vectors.npz or vectors.parquet")


def run(args: argparse.Namespace) -> int:
    return {"add": _add, "search": _search, "remove": _remove, "info": _info, "export": _export}[args.action](args)


def _add(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ._common import load_encoder

    if args.layout and args.singer:
        from ..errors import ConfigError

        raise ConfigError("--layout labels entries from the folders; drop --singer, or drop --layout.")
    paths, singers = _inputs(args)
    encoder = load_encoder(args)
    with Catalog.open_or_create(args.catalog, encoder, backend=args.backend) as cat:
        report = cat.add(encoder, paths, singer=singers, windows=args.windows, skip_unreadable=args.skip_unreadable, progress=not args.no_progress)
        for path, reason in report.skipped:
            print(f"skipped {path}: {reason}")
        print(f"{report.summary()}; {len(cat)} entries in {args.catalog}")
    return 0


def _inputs(args: argparse.Namespace):
    """Files to add and their singer labels (None: unlabelled)."""
    from pathlib import Path

    from ..extract import expand_inputs

    if args.layout is None:
        return expand_inputs(args.inputs), args.singer
    from ..data.datasets import discover

    found = [r for item in args.inputs for r in discover(item, args.layout)] if all(Path(i).is_dir() for i in args.inputs) else None
    if found is None:
        from ..errors import ConfigError

        raise ConfigError("--layout reads singer labels from folders; pass folders only.")
    return [r.path for r in found], [r.singer for r in found]


def _search(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ._common import load_encoder, threshold_note

    encoder = load_encoder(args)
    query = encoder.measure(args.query)
    with Catalog.open(args.catalog, encoder.artifact.fingerprint, backend=args.backend, readonly=True) as cat:
        hits = cat.search(query.embedding, k=args.k, by=args.by, windows=args.windows)
        gallery = cat.gallery() if args.by == "singer" else None
        durations = {h.record_id: cat.get(h.record_id).duration for h in hits if h.record_id is not None}
    rows = []
    for h in hits:
        other = gallery.profiles[h.singer].seconds if gallery else (h.end - h.start if h.start is not None else durations.get(h.record_id))
        thr, source = encoder.decision_threshold(None, (query.seconds, other or query.seconds))
        rows.append({**h.to_dict(), "threshold": thr, "threshold_source": source, "same_singer": None if thr is None else h.score >= thr})
    if args.json:
        print(json.dumps({"query": args.query, "by": args.by, "hits": rows}))
        return 0
    if not rows:
        print(f"no entries to search in {args.catalog}" + (" with singer labels" if args.by == "singer" else ""))
        return 0
    print(f"{args.by}s most similar to {args.query} ({threshold_note(rows[0]['threshold'], rows[0]['threshold_source'])} for the first):")
    for rank, r in enumerate(rows, 1):
        mark = "" if r["same_singer"] is None else ("  same singer" if r["same_singer"] else "")
        where = f"  {r['start']:.1f}-{r['end']:.1f} s" if r["start"] is not None else ""
        name = r["singer"] if args.by == "singer" else f"#{r['record_id']} {r['path']}" + (f" [{r['singer']}]" if r["singer"] else "")
        print(f"  {rank}. {r['score']:.4f}  {name}{where}{mark}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..catalog import Catalog

    with Catalog.open(args.catalog) as cat:
        n = cat.remove(ids=args.ids, paths=args.paths, singer=args.singer)
        print(f"removed {n} entr{'y' if n == 1 else 'ies'}; {len(cat)} left in {args.catalog}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..catalog import Catalog

    with Catalog.open(args.catalog, readonly=True) as cat:
        info = cat.info()
        singers = cat.singers()
        records = cat.records() if args.list else []
    if args.json:
        print(json.dumps({**info, "singer_counts": singers, "entries": [r.to_dict() for r in records]}))
        return 0
    print(
        f"{info['folder']}: {info['count']} entries ({info['windows']} window vectors), {info['singers']} labelled singers, "
        f"{info['dim']}-d vectors of model {info['model_fingerprint'][:12]}, backend {info['backend']}, {info['bytes'] / 1e6:.1f} MB"
    )
    for r in records:
        print(f"  #{r.id} {r.path}" + (f" [{r.singer}]" if r.singer else "") + (f" {r.duration:.1f} s" if r.duration else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ..catalog.export import export_catalog

    with Catalog.open(args.catalog, readonly=True) as cat:
        print(f"wrote {len(cat)} entries to {export_catalog(cat, args.out)}")
    return 0
