"""Index vectors computed elsewhere (``itr index --from-embeddings``): clip-retrieval outputs, an
``itr export --to parquet`` file, anything a reader turns into ``EmbeddedItem``s.

The index records the model the vectors belong to (``--model``; its fingerprint and dimension must
fit the vectors), so that queries are encoded by the same model. The build is the one an ordinary
index gets: checkpoints every ``checkpoint_every`` items (an interrupted run leaves a loadable index,
and the re-run writes only new and changed items), removed items deleted, one bad item skipped and
reported by id.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn
from ..errors import InputError
from ..records import check_item_id, check_meta, check_text
from .build import BuildOptions, BuildReport, check_source
from .writer import IndexWriter


@dataclass(slots=True)
class EmbeddedItem:
    """One item with its vectors already computed: an image vector and/or caption vectors."""

    id: str
    image: str | None
    captions: list[str]
    meta: dict[str, Any]
    image_vector: np.ndarray | None
    caption_vectors: np.ndarray  # (len(captions), dim); (0, dim) when the captions came without vectors


def _unit(vectors: np.ndarray, where: str) -> np.ndarray:
    """Unit rows (ITR scores are inner products of unit vectors); zero or non-finite rows are refused."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if not np.all(np.isfinite(v)) or np.any(norms == 0):
        raise InputError(f"{where}: a vector is zero or not finite")
    return (v / norms).astype(np.float32)


def _signature(it: EmbeddedItem) -> str:
    h = hashlib.sha1()
    for arr in (it.image_vector, it.caption_vectors):
        if arr is not None:
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    h.update(json.dumps({"image": it.image, "captions": it.captions, "meta": it.meta}, sort_keys=True).encode())
    return "emb:" + h.hexdigest()[:24]


def build_from_embeddings(items: Iterable[EmbeddedItem], encoder: dict[str, Any], dim: int,
                          out: str | os.PathLike[str], options: BuildOptions | None = None, *,
                          source: str | None = None, progress: ProgressFn | None = None) -> BuildReport:
    """Create or update the dense index at ``out`` from precomputed vectors (``encoder``: the model
    description to record, whose ``dim`` the vectors must have)."""
    start = time.perf_counter()
    options = options or BuildOptions()
    if int(encoder.get("dim", dim)) != dim:
        raise InputError(f"the vectors have {dim} dimensions, model '{encoder.get('spec')}' makes {encoder.get('dim')}; "
                         "name the model that computed them with --model")
    if options.representation != "dense":
        raise InputError("--from-embeddings indexes dense vectors only (--repr dense)")
    root = Path(out)
    report = BuildReport(index=str(root))
    seen: set[str] = set()
    done = 0
    with IndexWriter(root, encoder=encoder, source=source, reset=options.rebuild, reprs=["dense"],
                     lock_timeout=options.lock_timeout) as writer:
        if source is not None:
            check_source(writer, source, options)  # one index, one source, as for any build
        live = writer.live_items()
        iterator: Iterator[EmbeddedItem] = iter(items)
        while True:
            chunk = list(islice(iterator, max(1, options.checkpoint_every)))
            if not chunk:
                break
            records, images, texts, text_vecs = [], [], [], []
            for it in chunk:
                where = f"item '{it.id}'"
                try:
                    check_item_id(it.id, where)
                    if it.id in seen:
                        raise InputError(f"{where}: duplicate id (the first one is kept)")
                    seen.add(it.id)
                    captions = [check_text(c, f"{where}: caption") for c in it.captions]
                    meta = check_meta(it.meta, f"{where}: 'meta'")
                    if it.image_vector is None and not captions:
                        raise InputError(f"{where}: no image vector and no caption")
                    if len(it.caption_vectors) != len(captions):
                        raise InputError(f"{where}: {len(captions)} caption(s) but {len(it.caption_vectors)} "
                                         "caption vector(s); captions need their vectors")
                    img = None if it.image_vector is None else _unit(np.reshape(it.image_vector, (1, -1)), where)
                    caps = _unit(it.caption_vectors, where) if captions else np.zeros((0, dim), np.float32)
                    for arr in (img, caps):
                        if arr is not None and arr.shape[1] != dim:
                            raise InputError(f"{where}: vector has {arr.shape[1]} dimensions, not {dim}")
                except InputError as exc:
                    report.failed.append(str(exc))
                    continue
                sig = _signature(it)
                old = live.get(it.id)
                if old is not None and old.signature == sig:
                    report.unchanged += 1
                    continue
                if old is not None:
                    writer.delete(old.segment, [it.id])
                    report.updated += 1
                else:
                    report.added += 1
                row = None
                if img is not None:
                    row = len(images)
                    images.append(img[0])
                records.append({"id": it.id, "image": it.image, "row": row, "signature": sig, "meta": meta,
                                "captions": len(captions)})
                texts.extend({"id": f"{it.id}#{n}", "item": it.id, "text": c} for n, c in enumerate(captions))
                text_vecs.extend(caps)
            if records:
                writer.add_segment(records, np.array(images, np.float32).reshape(-1, dim), texts,
                                   np.array(text_vecs, np.float32).reshape(-1, dim))
                report.images_encoded += len(images)
                report.texts_encoded += len(text_vecs)
            done += len(chunk)
            writer.commit(complete=False)
            if progress:
                progress(done, done)
        for item_id, old in live.items():
            if item_id not in seen and old.origin is None:
                writer.delete(old.segment, [item_id])
                report.removed += 1
        writer.commit(complete=True)
        writer.maybe_compact()
        report.counts = dict(writer.manifest["counts"])
    report.seconds = time.perf_counter() - start
    return report
