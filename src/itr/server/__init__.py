"""HTTP API and web page (``itr serve``). Needs the ``server`` extra: pip install 'itr[server]'."""

from __future__ import annotations

import os
from typing import Any

from .._utils import require


def create_app(service: Any, **kwargs: Any) -> Any:
    """The FastAPI app serving an ``itr.service.IndexService`` (see ``itr.server.app``)."""
    require("fastapi", "server", "itr serve")
    require("python_multipart", "server", "itr serve (uploads)")
    from .app import create_app as _create

    return _create(service, **kwargs)


def app_from_env() -> Any:
    """App factory for running under an ASGI server of your choice, for example
    ``ITR_INDEX=./index uvicorn --factory itr.server:app_from_env``. ``ITR_READ_ONLY=1`` turns off
    adding and deleting; ``ITR_ALLOW_HOSTS`` and ``ITR_ALLOW_ORIGINS`` (comma-separated) are
    ``itr serve --allow-host`` and ``--allow-origin``."""
    from ..service import IndexService
    from .guard import RequestGuard

    index = os.environ.get("ITR_INDEX")
    if not index:
        from ..errors import InputError

        raise InputError("set ITR_INDEX to the index folder to serve")
    read_only = os.environ.get("ITR_READ_ONLY", "").lower() in ("1", "true", "yes")
    def names(var: str) -> tuple[str, ...]:
        return tuple(n.strip() for n in os.environ.get(var, "").split(",") if n.strip())

    guard = RequestGuard(allowed_hosts=names("ITR_ALLOW_HOSTS"), allowed_origins=names("ITR_ALLOW_ORIGINS"))
    return create_app(IndexService.open(index, read_only=read_only), guard=guard)


__all__ = ["app_from_env", "create_app"]
