"""Serving back ends outside the ITR index folder: existing distributed engines, never a home-made one.

An index address is a folder path (the embedded ITR index) or ``milvus:URI[#NAME]`` (a Milvus
server or cluster, or a Milvus Lite ``.db`` file, holding an export made by ``itr export``).
"""

from __future__ import annotations

import os

from .milvus import SCHEME as MILVUS_SCHEME

SCHEMES = (MILVUS_SCHEME,)


def is_remote(spec: str | os.PathLike[str]) -> bool:
    """Whether an index address names a back end (``milvus:...``) rather than an index folder."""
    return isinstance(spec, str) and spec.startswith(SCHEMES)
