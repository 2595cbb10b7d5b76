"""``singerid serve``: a REST API and a web page over a model and a catalogue (extra ``singerid[serve]``).

:func:`create_app` builds the FastAPI application from :class:`ServeSettings`; ``singerid serve``
runs it with uvicorn. Importing this package needs FastAPI; the model itself runs in separate
inference processes, so the web process never imports torch.
"""

from __future__ import annotations

from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(*args, **kwargs):
    """See :func:`singerid.serve.app.create_app`."""
    from .app import create_app as build

    return build(*args, **kwargs)
