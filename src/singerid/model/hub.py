"""Pretrained models by name: the authors' released checkpoints, fetched once through ``huggingface_hub``.

A model spec is one of:

* an existing local path (folder or ``.pt`` artefact): used as is, whatever its name;
* a known name (:data:`KNOWN_MODELS`): a sub-folder of :data:`OFFICIAL_REPO` in the authors'
  layout (``model.pt`` + ``hyperparams.yaml``);
* ``hf:OWNER/REPO[/SUBFOLDER][@REVISION]``: any repository in the authors' layout or in
  singerid's own artefact layout (``config.json`` + ``weights.safetensors``, or ``weights.pt`` of older ones).

Files are downloaded by ``huggingface_hub`` into its cache, so its settings hold (``HF_ENDPOINT``,
``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``). They are converted once into
singerid's artefact cache under :func:`singerid_home` (``SINGERID_HOME``, default
``~/.cache/singerid``), in a folder keyed by the source files' hashes, which the artefact's
``hub`` provenance records. Once converted, a load reads ``ref.json`` and the artefact and makes no
network request. A file lock serialises fetching and converting one model across processes; the
artefact is written to a temporary folder and renamed into place, ``ref.json`` last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import AUDIO_EXTENSIONS
from ..errors import CheckpointError, ConfigError
from ..fileio import write_text

OFFICIAL_REPO = "BernardoTorres/singer-identity"
HF_PREFIX = "hf:"
SINGERID_HOME_ENV = "SINGERID_HOME"
DEFAULT_HOME = Path("~/.cache/singerid")
REF_FILE = "ref.json"
OFFICIAL_FILES = ("model.pt", "hyperparams.yaml")
"""The authors' layout (``hyperparams.yaml`` optional)."""
ARTEFACT_FILES = ("config.json", "weights.safetensors", "weights.pt")
"""singerid's artefact layout: ``config.json`` and one of the weights files."""


@dataclass(frozen=True)
class KnownModel:
    """A released model of the paper: its method and the sub-folders of :data:`OFFICIAL_REPO` that may hold it."""

    name: str
    method: str
    folders: tuple[str, ...]


KNOWN_MODELS = {
    m.name: m
    for m in (
        KnownModel("byol", "BYOL", ("byol",)),
        KnownModel("contrastive", "contrastive (SimCLR-style)", ("contrastive",)),
        KnownModel("contrastive-vc", "contrastive + vocal-conversion augmentation", ("contrastive-vc",)),
        # The authors' README says "uniformity"; the repository folder is reported as "unif-align".
        KnownModel("uniformity", "uniformity-alignment", ("unif-align", "uniformity")),
        KnownModel("vicreg", "VICReg", ("vicreg",)),
    )
}
ALIASES = {"unif-align": "uniformity"}


@dataclass(frozen=True)
class HubSource:
    """Where a named model lives on the hub: the repository, candidate sub-folders (tried in order), revision."""

    spec: str
    repo: str
    folders: tuple[str, ...]
    revision: str = "main"

    @property
    def cache_dir(self) -> Path:
        """This source's folder in the artefact cache."""
        safe = lambda s: re.sub(r"[^A-Za-z0-9._-]", "--", s)  # noqa: E731
        return singerid_home() / "models" / safe(self.repo) / f"{safe(self.folders[0]) or '_root'}@{safe(self.revision)}"


def singerid_home() -> Path:
    """singerid's cache folder: ``$SINGERID_HOME``, default ``~/.cache/singerid``."""
    return Path(os.environ.get(SINGERID_HOME_ENV) or DEFAULT_HOME).expanduser()


def known_names() -> str:
    return ", ".join(KNOWN_MODELS)


def parse_model_spec(spec: str | os.PathLike) -> Path | HubSource:
    """A local path, or the :class:`HubSource` that a name or ``hf:`` spec stands for.

    An existing path always wins. A missing path that looks like one (has a folder separator or a
    ``.pt`` suffix) is returned as a path so that loading it says "not found"; any other unknown
    name raises :class:`ConfigError` listing the known names.
    """
    text = os.fspath(spec)
    if Path(text).exists():
        return Path(text)
    if text.startswith(HF_PREFIX):
        return _parse_hf(text)
    name = ALIASES.get(text, text)
    if name in KNOWN_MODELS:
        return HubSource(spec=text, repo=OFFICIAL_REPO, folders=KNOWN_MODELS[name].folders)
    if "/" in text or os.sep in text or text.endswith(".pt"):
        return Path(text)
    raise ConfigError(
        f"model {text!r} is neither an existing path nor a known model name; known names: {known_names()} "
        "(or hf:OWNER/REPO[/SUBFOLDER][@REVISION], or a local model folder)."
    )


def _parse_hf(text: str) -> HubSource:
    body, _, revision = text[len(HF_PREFIX) :].partition("@")
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2 or (revision == "" and "@" in text):
        raise ConfigError(f"{text!r}: expected hf:OWNER/REPO[/SUBFOLDER][@REVISION].")
    return HubSource(spec=text, repo="/".join(parts[:2]), folders=("/".join(parts[2:]),), revision=revision or "main")


def resolve_model(spec: str | os.PathLike, *, refresh: bool = False) -> Path:
    """The local artefact path for ``spec``: the path itself, or the cached conversion of a hub model.

    ``refresh`` asks the hub again even when a converted copy is cached.
    """
    target = parse_model_spec(spec)
    if isinstance(target, Path):
        if target.is_file() and target.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS:
            raise CheckpointError(
                f"{target}: is an audio file, not a model. Pass a model folder, a .pt artefact or a model name "
                f"({', '.join(KNOWN_MODELS)}; see `singerid models`)."
            )
        return target
    return fetch_model(target, refresh=refresh)


def cached_model(source: HubSource) -> Path | None:
    """The converted artefact of ``source`` if it is cached and intact, else None (no network)."""
    found, _ = _cached(source)
    return found


def _cached(source: HubSource) -> tuple[Path | None, str]:
    """``(path, "")`` for an intact cached artefact; ``(None, why)`` otherwise (``why`` empty: not cached)."""
    ref_file = source.cache_dir / REF_FILE
    if not ref_file.is_file():
        return None, ""
    try:
        path = source.cache_dir / json.loads(ref_file.read_text(encoding="utf-8"))["artifact"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{ref_file}: cached copy is incomplete ({type(exc).__name__})"
    if not _intact(path):
        from .artifact import weights_file

        return None, f"{weights_file(path)} no longer matches its recorded hash"
    return path, ""


def _intact(artifact: Path) -> bool:
    """Whether a cached artefact folder is whole: its weights hash to what its config records."""
    try:
        meta = json.loads((artifact / "config.json").read_text(encoding="utf-8"))
        from .artifact import weights_file

        return _sha256(weights_file(artifact)) == meta["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def fetch_model(source: HubSource, *, refresh: bool = False) -> Path:
    """Download (through ``huggingface_hub``) and convert ``source`` into the artefact cache; return the artefact."""
    from filelock import FileLock

    found, why = _cached(source)
    if found is not None and not refresh:
        return found
    if why and _offline():
        raise CheckpointError(
            f"model {source.spec!r}: {why}; unset HF_HUB_OFFLINE to re-fetch it, or delete {source.cache_dir}."
        )
    source.cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(source.cache_dir) + ".lock"):
        # Another process may have finished the same conversion while this one waited.
        found, why = _cached(source)
        if found is not None and not refresh:
            return found
        # huggingface_hub's cache is reused; a file in it that fails its hash check is downloaded again.
        folder, files = _download(source)
        return _convert(source, folder, files)


def _download(source: HubSource) -> tuple[str, dict[str, Path]]:
    """The first candidate folder holding either layout: ``(folder, {file name: local path})``."""
    tried = []
    for folder in source.folders:
        for layout in (OFFICIAL_FILES[:1], ARTEFACT_FILES):
            first = _hub_file(source, folder, layout[0], required=False)
            if first is None:
                tried.append(f"{folder + '/' if folder else ''}{layout[0]}")
                continue
            files = {layout[0]: first}
            for name in (OFFICIAL_FILES[1:] if layout == OFFICIAL_FILES[:1] else layout[1:]):
                got = _hub_file(source, folder, name, required=False)
                if got is not None:
                    files[name] = got
            if layout == ARTEFACT_FILES and not set(ARTEFACT_FILES[1:]) & set(files):
                raise CheckpointError(
                    f"model {source.spec!r}: {folder + '/' if folder else ''}config.json has no weights file beside it "
                    f"({' or '.join(ARTEFACT_FILES[1:])}); upload the whole artefact folder."
                )
            return folder, files
    raise CheckpointError(
        f"model {source.spec!r}: {source.repo}@{source.revision} has no {' nor '.join(tried)}; "
        "check the sub-folder name (the authors' layout needs model.pt, singerid's config.json + weights.safetensors)."
    )


def _hub_file(source: HubSource, folder: str, name: str, required: bool) -> Path | None:
    """One file through ``hf_hub_download``, hash-checked against its ETag; None if the hub has no such file."""
    from huggingface_hub import (
        _CACHED_NO_EXIST,
        constants,
        hf_hub_download,
        try_to_load_from_cache,
    )
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    where = f"{source.repo}/{folder + '/' if folder else ''}{name}@{source.revision}"
    for attempt in range(2):
        try:
            local = Path(
                hf_hub_download(
                    source.repo, name, subfolder=folder or None, revision=source.revision,
                    force_download=attempt > 0, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT,
                )  # fmt: skip
            )
        except LocalEntryNotFoundError as exc:
            path_in_repo = f"{folder}/{name}" if folder else name
            known_missing = try_to_load_from_cache(source.repo, path_in_repo, revision=source.revision) is _CACHED_NO_EXIST
            if required or not known_missing:
                raise CheckpointError(_hub_error(source, where, exc)) from None
            return None
        except EntryNotFoundError:
            if required:
                raise CheckpointError(f"model {source.spec!r}: the hub has no {where}; the folder is incomplete.") from None
            return None
        except Exception as exc:
            raise CheckpointError(_hub_error(source, where, exc)) from None
        if _matches_etag(local):
            return local
        if _offline():
            raise CheckpointError(
                f"model {source.spec!r}: cached {local} no longer matches its hash; unset HF_HUB_OFFLINE to re-fetch it."
            )
    raise CheckpointError(f"model {source.spec!r}: {where} as downloaded does not match the hash the hub announced; retry later.")


def _matches_etag(local: Path) -> bool:
    """Whether a cached hub file still has the content its blob name (the ETag) promises.

    Large (LFS) files are named by their SHA-256, small ones by their git blob SHA-1.
    """
    etag = local.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        return _sha256(local) == etag
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        return _git_sha1(local) == etag
    return True


def _hub_error(source: HubSource, where: str, exc: Exception) -> str:
    """One line for a failed download, by cause."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    fixes = "or pass a local model folder (--model PATH)"
    if isinstance(exc, LocalEntryNotFoundError) and isinstance(exc.__cause__, HfHubHTTPError):
        exc = exc.__cause__  # the hub answered, with an error status
    elif isinstance(exc, LocalEntryNotFoundError) or _offline():
        cause = exc.__cause__
        if _offline():
            return (
                f"model {source.spec!r} is not cached and HF_HUB_OFFLINE is set: connect once "
                f"(`singerid models download {source.spec}`) and copy {singerid_home()}, {fixes}."
            )
        kind = type(cause).__name__ if cause is not None else ""
        if "Timeout" in kind:
            return (
                f"model {source.spec!r}: {constants.ENDPOINT} did not answer within {constants.HF_HUB_ETAG_TIMEOUT} s "
                f"for {where}; check the connection or raise HF_HUB_ETAG_TIMEOUT, {fixes}."
            )
        return f"model {source.spec!r}: cannot reach {constants.ENDPOINT} for {where} ({kind or 'no connection'}); connect once, {fixes}."
    if isinstance(exc, RevisionNotFoundError):
        return f"model {source.spec!r}: revision {source.revision!r} not found in {source.repo} (HTTP 404); check the @REVISION."
    if isinstance(exc, GatedRepoError):
        return f"model {source.spec!r}: {source.repo} is gated; accept its terms on the hub and set HF_TOKEN, {fixes}."
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, RepositoryNotFoundError) or status == 401:
        return (
            f"model {source.spec!r}: the hub refused {where} (HTTP {status}: repository not found or not authorised); "
            f"check the name, set HF_TOKEN for a private repository, {fixes}."
        )
    if isinstance(exc, HfHubHTTPError):
        return f"model {source.spec!r}: the hub answered HTTP {status} for {where}; retry later, {fixes}."
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"model {source.spec!r}: download of {where} failed ({type(exc).__name__}: {first}); {fixes}."


def _convert(source: HubSource, folder: str, files: dict[str, Path]) -> Path:
    """Convert the downloaded files into ``cache_dir/<key>`` (atomic rename) and point ``ref.json`` at it."""
    from .artifact import load_artifact

    hashes = {name: _sha256(path) for name, path in sorted(files.items())}
    key = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    provenance = {
        "spec": source.spec,
        "repo": source.repo,
        "folder": folder,
        "revision": source.revision,
        "commit": _commit_of(files),
        "files_sha256": hashes,
        "layout": "official" if "model.pt" in files else "singerid",
    }
    out = source.cache_dir / key
    if _intact(out):  # the same files were converted before (e.g. a refresh that found no change)
        return _write_ref(source, key, provenance)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=source.cache_dir))
    try:
        art_dir = tmp / "artifact"
        if "model.pt" in files:
            from .official import import_official

            # The snapshot folder of huggingface_hub's cache is already in the authors' layout.
            import_official(files["model.pt"].parent, art_dir, extra={"hub": provenance})
        else:
            art_dir.mkdir()
            for name in files:
                shutil.copyfile(files[name], art_dir / name)
            meta = json.loads((art_dir / "config.json").read_text(encoding="utf-8"))
            meta["hub"] = provenance
            write_text(art_dir / "config.json", json.dumps(meta, indent=2) + "\n")
        load_artifact(art_dir)  # refuse to cache anything that does not load
        if out.exists():
            shutil.rmtree(out)
        os.replace(art_dir, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _write_ref(source, key, provenance)


def _write_ref(source: HubSource, key: str, provenance: dict) -> Path:
    """Point ``ref.json`` at the artefact ``key`` (written last: a reader sees the old or the new, whole)."""
    ref = {"spec": source.spec, "artifact": key, **{k: provenance[k] for k in ("repo", "folder", "revision", "commit")}}
    write_text(source.cache_dir / REF_FILE, json.dumps(ref, indent=2) + "\n")
    return source.cache_dir / key


def _commit_of(files: dict[str, Path]) -> str | None:
    """The commit the files were served from (``huggingface_hub`` puts them under ``snapshots/<commit>/``)."""
    for path in files.values():
        parts = Path(path).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


@dataclass(frozen=True)
class ModelRow:
    """One line of ``singerid models``."""

    name: str
    method: str
    embedding_dim: int
    source: str
    cached: Path | None


def list_models() -> list[ModelRow]:
    """The known names with their method, embedding size, source and cached artefact (no network)."""
    from .official import OFFICIAL_EMBEDDING_DIM

    rows = []
    for m in KNOWN_MODELS.values():
        source = HubSource(m.name, OFFICIAL_REPO, m.folders)
        where = " or ".join(f"{OFFICIAL_REPO}/{f}" for f in m.folders)
        rows.append(ModelRow(m.name, m.method, OFFICIAL_EMBEDDING_DIM, f"hf:{where}", cached_model(source)))
    return rows


def model_info(spec: str | os.PathLike) -> dict:
    """What ``singerid models info`` prints: path, provenance, fingerprint, frontend, rate, window, calibration."""
    from .artifact import load_artifact

    art = load_artifact(resolve_model(spec))
    meta = art.meta
    provenance = {k: meta[k] for k in ("source", "official", "hub", "training") if meta.get(k)}
    return {
        "path": str(art.path),
        "backbone": art.config.backbone,
        "embedding_dim": art.config.embedding_dim,
        "fingerprint": art.fingerprint,
        "frontend_mode": art.config.frontend.mode,
        "sample_rate": meta.get("sample_rate"),
        "window_seconds": art.window_seconds,
        "calibration": art.calibration or None,
        "singerid_version": meta.get("singerid_version"),
        "provenance": provenance,
    }
