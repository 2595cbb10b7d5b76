"""The HEAR embedding API under the import path HEAR tooling expects (``singerid.hear``).

The implementation lives in :mod:`singerid.export.hear`.
"""

from .export.hear import (
    HearModel,
    get_scene_embeddings,
    get_timestamp_embeddings,
    load_model,
)

__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
