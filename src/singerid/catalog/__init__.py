"""A persistent catalogue of singer embeddings: store (SQLite + vectors), search backends, clustering.

``Catalog`` is the entry point; see :mod:`singerid.catalog.core`.
"""

from __future__ import annotations

from .core import DEFAULT_BACKEND, Catalog, Hit
from .ingest import AddReport
from .store import CatalogError, Record

__all__ = ["DEFAULT_BACKEND", "AddReport", "Catalog", "CatalogError", "Hit", "Record"]
