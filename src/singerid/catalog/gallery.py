"""The labelled entries of a catalogue as a :class:`~singerid.profiles.Gallery` for ``SingerEncoder.identify``.

A singer profile is the catalogue entries carrying that singer's label; ranking goes through
:meth:`Catalog.search` with ``by="singer"``, so ``identify`` decides "unknown" exactly as with a
``.npz`` gallery.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..profiles import Gallery, Match, SingerProfile


class CatalogGallery(Gallery):
    """A read view of a catalogue's singers that ranks with the catalogue's singer search."""

    def __init__(self, catalog) -> None:
        names, centroids = catalog.singer_centroids()
        with catalog.store.lock:
            seconds = dict(
                catalog.store.db.execute("SELECT singer, SUM(duration) FROM recordings WHERE singer IS NOT NULL GROUP BY singer").fetchall()
            )
        profiles = {n: SingerProfile(n, centroids[i : i + 1], seconds.get(n)) for i, n in enumerate(names)}
        super().__init__(catalog.model_fingerprint, profiles)
        self.catalog = catalog

    def rank(self, embedding: np.ndarray, top: int = 5) -> list[Match]:
        hits = self.catalog.search(embedding, k=top, by="singer")
        if not hits:
            raise ConfigError(
                f"{self.catalog.folder}: the catalogue has no labelled singers; enroll some first "
                "(`singerid enroll NAME clips... --catalog ...`)."
            )
        return [Match(h.singer, h.score) for h in hits]
