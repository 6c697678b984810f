"""``itr export``: the export registry. ``--to SCHEME:TARGET`` names where an index goes; each
scheme is data (a description) plus a factory, and an unknown one errors with the valid names."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .errors import UnknownNameError


def _milvus(index: Any, target: str, **kw: Any) -> Any:
    from .backends.milvus_export import export_to_milvus

    return export_to_milvus(index, "milvus:" + target, **kw)


def _clip_retrieval(index: Any, target: str, *, replace: bool = False, progress: Any = None, **_: Any) -> Any:
    from .backends.file_export import export_clip_retrieval

    return export_clip_retrieval(index, target, replace=replace, progress=progress)


def _parquet(index: Any, target: str, *, replace: bool = False, progress: Any = None, **_: Any) -> Any:
    from .backends.file_export import export_parquet

    return export_parquet(index, target, replace=replace, progress=progress)


EXPORTERS: dict[str, tuple[Callable[..., Any], str]] = {
    "milvus": (_milvus, "milvus:http://HOST:PORT[#NAME] or milvus:FILE.db[#NAME]: a Milvus server, cluster or "
                        "Milvus Lite file, searchable and servable with itr search/serve"),
    "clip-retrieval": (_clip_retrieval, "clip-retrieval:DIR: img_emb/*.npy, text_emb/*.npy and metadata/*.parquet, "
                                        "as clip-retrieval inference writes them (autofaiss, clip back)"),
    "parquet": (_parquet, "parquet:FILE: one row per image and caption with its vector, sparse terms and metadata"),
}


def export_index(index: str | os.PathLike[str], to: str, **options: Any) -> Any:
    """Export an index folder to ``to`` (``SCHEME:TARGET``); ``options`` go to the exporter
    (``replace``, ``progress``; Milvus also ``batch_size``, ``dense_index``). Returns its report."""
    scheme, sep, target = to.partition(":")
    if not sep or scheme not in EXPORTERS or not target:
        valid = "; ".join(help_ for _, help_ in EXPORTERS.values())
        raise UnknownNameError(f"--to '{to}': valid destinations are {valid}")
    return EXPORTERS[scheme][0](index, target, **options)
