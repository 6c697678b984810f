"""``itr export``: copy an ITR index folder into Milvus, incrementally and resumably.

The index folder stays the source of truth (it is where ``itr index`` and the Ray engine write);
an export mirrors its live items into the two collections described in ``itr.backends.milvus``.

- **Incremental.** Every row carries its item's signature. A re-run reads the (id, signature)
  pairs already in Milvus and writes only new and changed items, and deletes the items the index
  no longer has.
- **Resumable, never half-visible as complete.** The manifest property says ``complete: false``
  from the first write until the last batch is flushed; searchers refuse an incomplete export.
  An interrupted export leaves some items written: the re-run finds them up to date (signature,
  image and caption count all match) and goes on with the rest.
- **Refusals.** An existing export of another model, dimension, sparse model or representation
  is refused (``--replace`` drops it first); a collection that is not an ITR export is refused.
- **Bad items.** An item whose id, path, caption or meta exceeds Milvus's field limits is skipped
  and reported by id; the others are exported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import IncompatibleIndexError, InputError
from ..index.store import DenseIndex, Segment, StoredSparseRows
from ..sparse.index import pack_terms
from ..types import Target
from .milvus import (
    DEFAULT_RETRY,
    FORMAT,
    FORMAT_VERSION,
    MAX_ID_BYTES,
    MAX_TEXT_BYTES,
    MilvusAddress,
    MilvusConnection,
    RetryPolicy,
    in_filter,
    sparse_dict,
)

MAX_META_BYTES = 65_536
DENSE_INDEX_TYPES = ("AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN")


@dataclass
class ExportReport:
    """What one export did."""

    address: str
    items: int = 0  # live items of the index
    written: int = 0  # items (re)written this run
    unchanged: int = 0  # items already up to date in Milvus
    removed: int = 0  # items deleted from Milvus (no longer in the index)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item id, why)
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: {"items": 0, "images": 0, "texts": 0})  # in Milvus

    def to_dict(self) -> dict[str, Any]:
        return {"to": self.address, "items": self.items, "written": self.written, "unchanged": self.unchanged,
                "removed": self.removed, "skipped": [{"id": i, "error": e} for i, e in self.skipped],
                "seconds": round(self.seconds, 2)}


@dataclass
class _Item:
    record: dict[str, Any]
    seg: int
    caption_rows: list[int]


def _schema(target: Target, dim: int, representations: list[str]) -> Any:
    from pymilvus import DataType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    if target is Target.IMAGES:
        s.add_field("path", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        s.add_field("caption", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    else:
        s.add_field("item", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        s.add_field("ord", DataType.INT32)
        s.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    s.add_field("signature", DataType.VARCHAR, max_length=256)
    s.add_field("origin", DataType.VARCHAR, max_length=256)
    s.add_field("meta", DataType.JSON)
    if "dense" in representations:
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    if "sparse" in representations:
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    return s


def _wanted_manifest(idx: DenseIndex) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": idx.encoder_info, "dim": idx.dim,
            "representations": idx.representations, "sparse": idx.sparse_info, "complete": False,
            "source_index": str(idx.root.resolve()), "generation": idx.generation}


def _check_compatible(address: MilvusAddress, have: dict[str, Any], want: dict[str, Any]) -> None:
    """Refuse to mix an index into an export of another model, dimension or representation."""
    for what, a, b in (("model", have["encoder"]["fingerprint"], want["encoder"]["fingerprint"]),
                       ("dimension", have["dim"], want["dim"]),
                       ("representations", have["representations"], want["representations"]),
                       ("sparse model", (have.get("sparse") or {}).get("fingerprint"),
                        (want.get("sparse") or {}).get("fingerprint"))):
        if a != b:
            raise IncompatibleIndexError(
                f"{address} holds an export with another {what} (model '{have['encoder']['spec']}', dim "
                f"{have['dim']}, {'+'.join(have['representations'])}) than this index (model "
                f"'{want['encoder']['spec']}', dim {want['dim']}, {'+'.join(want['representations'])}); export to "
                "another #NAME, or pass --replace to drop it first")


def _live_items(idx: DenseIndex) -> Iterator[_Item]:
    for si, record, caption_rows in idx.live_records():
        yield _Item(record, si, caption_rows)


def _too_big(item: _Item, seg: Segment) -> str | None:
    """Why Milvus would refuse this item's rows (field limits), or None."""
    rec = item.record
    if len(rec["id"].encode()) + 16 > MAX_ID_BYTES:  # + room for a caption's "#n"
        return f"id is longer than {MAX_ID_BYTES - 16} bytes"
    if len((rec.get("image") or "").encode()) > MAX_ID_BYTES:
        return f"image path is longer than {MAX_ID_BYTES} bytes"
    if len(json.dumps(rec.get("meta") or {}).encode()) > MAX_META_BYTES:
        return f"meta is larger than {MAX_META_BYTES} bytes as JSON"
    for r in item.caption_rows:
        if len(seg.text_rows[r]["text"].encode()) > MAX_TEXT_BYTES:
            return f"a caption is longer than {MAX_TEXT_BYTES} bytes"
    return None


class _SparseRows:
    """Stored sparse rows as Milvus sparse vectors."""

    def __init__(self, idx: DenseIndex) -> None:
        self.rows = StoredSparseRows(idx)
        self.vocab = int((idx.sparse_info or {}).get("vocab_size", 0))

    def row(self, si: int, target: Target, r: int) -> dict[int, float]:
        return sparse_dict(*self.rows.row(si, target, r), self.vocab)


def export_to_milvus(index: str | os.PathLike[str] | DenseIndex, to: str | MilvusAddress, *,
                     replace: bool = False, batch_size: int = 256, dense_index: str = "AUTOINDEX",
                     retry: RetryPolicy = DEFAULT_RETRY, sleep: Callable[[float], None] = time.sleep,
                     progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Mirror an index folder's live items into Milvus (see the module docstring).

    Args:
        index: the index folder (or an opened one).
        to: ``milvus:URI[#NAME]`` or a parsed address.
        replace: drop an existing export under that name first (any model).
        batch_size: items per write.
        dense_index: Milvus index type of the dense field (AUTOINDEX: the server chooses; FLAT: exact).
        retry: back-off while the server does not answer.
        progress: called with (items done, items to write).
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1 (got {batch_size})")
    if dense_index.upper() not in DENSE_INDEX_TYPES:
        raise InputError(f"unknown Milvus index type '{dense_index}'; use one of {', '.join(DENSE_INDEX_TYPES)}")
    idx = index if isinstance(index, DenseIndex) else DenseIndex.open(index)
    address = to if isinstance(to, MilvusAddress) else MilvusAddress.parse(to)
    conn = MilvusConnection(address, retry, sleep)
    try:
        want = _wanted_manifest(idx)
        if replace:
            for target in Target:
                name = address.collection(target)
                conn.call("drop_collection", lambda n=name: conn.client.drop_collection(n))
        have = conn.read_manifest()
        if have is not None:
            _check_compatible(address, have, want)
        for target in Target:
            if not conn.has(target):
                params = conn.client.prepare_index_params()
                if "dense" in idx.representations:
                    params.add_index("dense", index_type=dense_index.upper(), metric_type="IP")
                if "sparse" in idx.representations:
                    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
                schema = _schema(target, idx.dim, idx.representations)
                name = address.collection(target)
                conn.call("create_collection", lambda n=name, s=schema, p=params: conn.client.create_collection(
                    n, schema=s, index_params=p))
        conn.write_manifest(want)  # complete: false until the last batch is flushed
        report = _sync(conn, idx, batch_size, progress)
        conn.call("flush", lambda: [conn.client.flush(address.collection(t)) for t in Target])
        done = {**want, "complete": True, "counts": report.counts,
                "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if "sparse" in idx.representations:
            # the terms with postings on each side: queries against the export pick their terms
            # among them, exactly as against the folder (DenseIndex.sparse_terms)
            done["sparse_terms"] = {t.value: pack_terms(m) for t in Target
                                    if (m := idx.sparse_terms(t)) is not None}
        conn.write_manifest(done)
    finally:
        conn.close()
    report.address = str(address)
    report.seconds = time.perf_counter() - start
    return report


def _sync(conn: MilvusConnection, idx: DenseIndex, batch_size: int,
          progress: Callable[[int, int], None] | None) -> ExportReport:
    """Write new and changed items, delete removed ones; return what was done."""
    state: dict[str, dict[str, Any]] = {}  # item id -> {"sigs": set, "image": bool, "captions": int}
    for row in conn.rows(Target.IMAGES, ["signature"]):
        s = state.setdefault(row["id"], {"sigs": set(), "image": False, "captions": 0})
        s["sigs"].add(row["signature"])
        s["image"] = True
    for row in conn.rows(Target.TEXTS, ["item", "signature"]):
        s = state.setdefault(row["item"], {"sigs": set(), "image": False, "captions": 0})
        s["sigs"].add(row["signature"])
        s["captions"] += 1
    report = ExportReport(str(conn.address))
    todo: list[_Item] = []
    seen: set[str] = set()
    for item in _live_items(idx):
        rec = item.record
        seen.add(rec["id"])
        report.items += 1
        why = _too_big(item, idx.segments[item.seg])
        if why is not None:
            report.skipped.append((rec["id"], why))
            continue
        report.counts["items"] += 1
        report.counts["images"] += rec.get("row") is not None
        report.counts["texts"] += len(item.caption_rows)
        s = state.get(rec["id"])
        if (s is not None and s["sigs"] == {rec.get("signature", "")} and s["image"] == (rec.get("row") is not None)
                and s["captions"] == len(item.caption_rows)):
            report.unchanged += 1
        else:
            todo.append(item)
    gone = [i for i in state if i not in seen] + [i for i, _ in report.skipped if i in state]
    for start in range(0, len(gone), 1024):
        _delete_items(conn, gone[start:start + 1024])
    report.removed = sum(1 for i in state if i not in seen)
    sparse = _SparseRows(idx) if "sparse" in idx.representations else None
    if progress:
        progress(0, len(todo))
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        _write_batch(conn, idx, batch, sparse)
        report.written += len(batch)
        if progress:
            progress(report.written, len(todo))
    return report


def _delete_items(conn: MilvusConnection, ids: list[str]) -> None:
    """Remove items (their image rows and all their captions)."""
    if not ids:
        return
    images, texts = (conn.address.collection(t) for t in Target)
    conn.call("delete", lambda: conn.client.delete(images, ids=ids))
    conn.call("delete", lambda: conn.client.delete(texts, filter=in_filter("item", ids)))


def _write_batch(conn: MilvusConnection, idx: DenseIndex, batch: list[_Item], sparse: _SparseRows | None) -> None:
    dense = "dense" in idx.representations
    image_rows: list[dict[str, Any]] = []
    text_rows: list[dict[str, Any]] = []
    for item in batch:
        rec, seg = item.record, idx.segments[item.seg]
        common = {"signature": rec.get("signature", ""), "origin": rec.get("origin") or "",
                  "meta": rec.get("meta") or {}}
        if rec.get("row") is not None:
            row = {"id": rec["id"], "path": rec.get("image") or "", "caption": seg.first_caption.get(rec["id"], ""),
                   **common}
            if dense:
                row["dense"] = np.asarray(seg.images[rec["row"]], dtype=np.float32).tolist()
            if sparse is not None:
                row["sparse"] = sparse.row(item.seg, Target.IMAGES, rec["row"])
            image_rows.append(row)
        for n, r in enumerate(item.caption_rows):
            t = seg.text_rows[r]
            row = {"id": t["id"], "item": rec["id"], "ord": n, "text": t["text"], **common}
            if dense:
                row["dense"] = np.asarray(seg.texts[r], dtype=np.float32).tolist()
            if sparse is not None:
                row["sparse"] = sparse.row(item.seg, Target.TEXTS, r)
            text_rows.append(row)
    # The items' old rows go first (an item may now have fewer captions, or no image), then the new
    # ones: a crash in between leaves items missing, which the next run sees as not up to date.
    _delete_items(conn, [it.record["id"] for it in batch])
    images, texts = (conn.address.collection(t) for t in Target)
    if image_rows:
        conn.call("upsert", lambda: conn.client.upsert(images, image_rows))
    if text_rows:
        conn.call("upsert", lambda: conn.client.upsert(texts, text_rows))
