"""Building and updating an index from a source: incremental, checkpointed, resumable.

Re-running on the same source encodes only new or changed items and drops removed ones. Work is
committed every ``checkpoint_every`` items, so an interrupted run leaves a loadable index (marked
incomplete) and the next run picks up where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, batched, display_path
from ..collection import OnError, SourceItem, SourceScan
from ..encoders.base import Encoder
from ..encoders.pipeline import encode_image_files
from ..errors import InputError
from ..images import DEFAULT_MAX_PIXELS
from ..sparse.encoder import SparseEncoder
from .ann import AnnPolicy
from .manifest import representations
from .writer import IndexWriter, LiveItem


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """How ``build_index`` runs.

    Attributes:
        checkpoint_every: items per committed segment; an interruption loses at most this much work.
        batch_size: images decoded and encoded per step.
        workers: image decode threads (None: number of CPUs, at most 4).
        max_pixels: decompression-bomb guard.
        on_error: SKIP records bad items and goes on; STOP raises at the first one (nothing of the
            current checkpoint is committed, earlier checkpoints stay).
        rebuild: discard the existing index contents (required to change the model of an index).
        representation: ``dense`` (float32 vectors, exact search), ``sparse`` (lexicon terms in an
            inverted index only: small and fast, no dense search) or ``both`` (sparse and hybrid
            search with dense re-scoring).
        ann: approximate dense search structures to build (see ``itr.index.ann``); None keeps the
            index's own policy (exact for a new index).
        replace_source: index a source other than the one the index was built from, replacing its
            items (without it, that is refused: it would silently remove every old item).
        lock_timeout: seconds to wait for another writer of the index (a server between its commits).
    """

    checkpoint_every: int = 1024
    batch_size: int = 32
    workers: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    on_error: OnError = OnError.SKIP
    rebuild: bool = False
    representation: str = "dense"
    ann: AnnPolicy | None = None
    replace_source: bool = False
    lock_timeout: float = 0.0


@dataclass(slots=True)
class BuildReport:
    """What a build did. ``failed`` holds one line per bad item (source problems included)."""

    index: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)
    images_encoded: int = 0
    texts_encoded: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0  # decoding and encoding alone (the rate users compare), not planning or writing
    counts: dict[str, int] = field(default_factory=dict)
    staged: list[str] = field(default_factory=list)  # ids written (added or updated), in order
    ann: list[str] = field(default_factory=list)  # "segment/side: factory" of each ANN index built
    resumed_shards: int = 0  # distributed runs: shards a previous, interrupted run had finished

    @property
    def images_per_second(self) -> float:
        seconds = self.encode_seconds or self.seconds
        return self.images_encoded / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged, "failed": len(self.failed), "failures": self.failed,
                "images_encoded": self.images_encoded, "texts_encoded": self.texts_encoded,
                "seconds": round(self.seconds, 3), "encode_seconds": round(self.encode_seconds, 3),
                "images_per_second": round(self.images_per_second, 2),
                "counts": self.counts, "ann": self.ann, "resumed_shards": self.resumed_shards}


def build_index(
    scan: SourceScan,
    encoder: Encoder,
    out: str | os.PathLike[str],
    options: BuildOptions = BuildOptions(),
    progress: ProgressFn | None = None,
    sparse: SparseEncoder | None = None,
    ann_progress: ProgressFn | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> BuildReport:
    """Create or update the index at ``out`` from ``scan`` with ``encoder`` (and ``sparse``, the
    lexicon encoder paired with it, when the representation includes sparse vectors). ``on_wait``
    is told (once) when another process holds the index and the build waits for it.

    Raises:
        IncompatibleIndexError: ``out`` was built with another model (and ``rebuild`` is off);
            raised by IndexWriter before anything is written.
        InputError: with ``on_error=STOP``, the first bad item; ``out`` was built from another
            source (and neither ``replace_source`` nor ``rebuild`` is on).
        IndexLockedError: another process kept the index past ``lock_timeout``.
    """
    with update_index(scan, encoder, out, options, sparse, ann_progress, on_wait) as (writer, report, live, todo):
        reprs = writer.manifest["representations"]
        total = len(todo)
        done = 0
        if progress:
            progress(0, total)
        for chunk in batched(todo, max(1, options.checkpoint_every)):
            _encode_chunk(list(chunk), encoder, writer, live, options, report, sparse if "sparse" in reprs else None)
            done += len(chunk)
            writer.commit(complete=done >= total)
            if progress:
                progress(done, total)
        writer.commit(complete=True)
    return report


@contextmanager
def update_index(scan: SourceScan, encoder: Encoder, out: str | os.PathLike[str], options: BuildOptions,
                 sparse: SparseEncoder | None, ann_progress: ProgressFn | None = None,
                 on_wait: Callable[[str], None] | None = None,
                 ) -> Iterator[tuple[IndexWriter, BuildReport, dict[str, LiveItem], list[SourceItem]]]:
    """What every build engine shares around its encode step: checks, the locked writer, the plan
    (``live`` items and the items ``todo``; removals already staged), and after the engine's own
    commits, merging of segments, approximate structures, counts and timing in the report."""
    start = time.perf_counter()
    reprs = representations(options.representation)
    if "sparse" in reprs and sparse is None:
        raise InputError(f"--repr {options.representation} needs a sparse encoder")
    if options.ann is not None and options.ann.enabled and "dense" not in reprs:
        raise InputError(f"--index {options.ann.kind} searches dense vectors; --repr sparse keeps none "
                         "(use --repr both, or --index exact)")
    root = Path(out)
    report = BuildReport(index=str(root), failed=list(scan.problems))
    if scan.problems and options.on_error is OnError.STOP:
        raise InputError(scan.problems[0] + " (stopped: --on-error stop)")
    with IndexWriter(root, encoder=encoder.describe(), source=scan.source, reset=options.rebuild, reprs=reprs,
                     sparse=sparse.describe() if "sparse" in reprs and sparse is not None else None,
                     lock_timeout=options.lock_timeout, on_wait=on_wait) as writer:
        moved = check_source(writer, scan.source, options)
        live, todo = plan_update(writer, scan, report, reencode=moved)
        yield writer, report, live, todo
        writer.maybe_compact()
        if options.ann is not None or writer.ann_policy.enabled:
            report.ann = writer.build_ann(options.ann, progress=ann_progress)
        report.counts = dict(writer.manifest["counts"])
    report.seconds = time.perf_counter() - start


def check_source(writer: IndexWriter, source: str, options: BuildOptions) -> bool:
    """Refuse to index another source into an index unless asked to; record the source indexed.
    Returns whether the source changed (its items are then all encoded again: the same id may now
    name another file)."""
    old = writer.manifest.get("source")
    if old is None or old == source:
        writer.set_source(source)
        return False
    if not options.replace_source:
        n = writer.manifest["counts"]["items"]
        raise InputError(f"{display_path(writer.root)} was built from {display_path(old)}; indexing "
                         f"{display_path(source)} into it would replace its {n} items: pass --replace-source "
                         "to do that, or choose another --out")
    writer.set_source(source)
    return True


def plan_update(writer: IndexWriter, scan: SourceScan, report: BuildReport, *,
                reencode: bool = False) -> tuple[dict[str, LiveItem], list[SourceItem]]:
    """(live items, items to encode): new and changed items (every item, with ``reencode``) are to
    encode; items gone from the source are deleted in ``writer`` (pending until its next commit)."""
    live = writer.live_items()
    wanted = {it.id for it in scan.items}
    todo: list[SourceItem] = []
    for it in scan.items:
        old = live.get(it.id)
        if reencode or old is None or old.signature != it.signature:
            todo.append(it)
        else:
            report.unchanged += 1
    for item_id, old in live.items():
        # Items added over the HTTP API belong to no source: re-indexing the source keeps them.
        if item_id not in wanted and old.origin is None:
            writer.delete(old.segment, [item_id])
            report.removed += 1
    return live, todo


def stage_items(writer: IndexWriter, items: list[SourceItem], encoder: Encoder, *,
                options: BuildOptions = BuildOptions(), sparse: SparseEncoder | None = None,
                origin: str | None = None) -> BuildReport:
    """Encode ``items`` and stage them in ``writer`` as one segment, replacing live items with the
    same ids; nothing is visible before ``writer.commit()``. For callers that add items one batch at
    a time (the HTTP API) rather than from a source. ``origin`` is recorded in each item."""
    report = BuildReport(index=str(writer.root))
    reprs = writer.manifest["representations"]
    _encode_chunk(items, encoder, writer, writer.live_items(), options, report,
                  sparse if "sparse" in reprs else None, origin)
    return report


@dataclass(slots=True)
class EncodedSegment:
    """A segment's contents, encoded and not yet written: the records and vectors of the items
    that encoded, and one line per item that did not."""

    items: list[dict[str, Any]]
    texts: list[dict[str, Any]]
    images: np.ndarray
    text_vectors: np.ndarray
    sparse_images: Any
    sparse_texts: Any
    failed: list[str]


def encode_segment(chunk: list[SourceItem], encoder: Encoder, options: BuildOptions, *,
                   sparse: SparseEncoder | None = None, keep_dense: bool = True,
                   origin: str | None = None) -> EncodedSegment:
    """Decode and encode ``chunk`` (images in decode threads, captions, sparse vectors when
    ``sparse``): the one encode step of in-process builds, HTTP additions and Ray actors.
    ``keep_dense`` False (--repr sparse) keeps (n, 0) dense arrays.

    Raises:
        InputError: with ``on_error=STOP``, the first item that cannot be read.
    """
    with_image = [it for it in chunk if it.image is not None]
    ok_vectors: dict[str, np.ndarray] = {}
    failed: list[str] = []
    for batch in encode_image_files(encoder, [it.image for it in with_image],  # type: ignore[misc]
                                    batch_size=options.batch_size, workers=options.workers,
                                    max_pixels=options.max_pixels,
                                    too_large_hint="raise --max-pixels to index it"):
        for _pos, reason in batch.errors:
            if options.on_error is OnError.STOP:
                raise InputError(reason + " (stopped: --on-error stop)")
            failed.append(reason)
        for pos, vec in zip(batch.indices, batch.embeddings, strict=True):
            ok_vectors[with_image[pos].id] = vec
    kept = [it for it in chunk if it.image is None or it.id in ok_vectors]
    items, texts = segment_records(kept, origin)
    dim = encoder.dim
    rows = [ok_vectors[it.id] for it in kept if it.image is not None]
    images = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    text_vectors = encoder.encode_texts([t["text"] for t in texts]) if texts else np.zeros((0, dim), np.float32)
    sp_images = sp_texts = None
    if sparse is not None:
        sp_images = sparse.encode(images, "image", max_terms=sparse.doc_terms)
        sp_texts = sparse.encode(text_vectors, "text", max_terms=sparse.doc_terms)
    if not keep_dense:  # --repr sparse: no dense vectors kept
        images, text_vectors = images[:, :0].copy(), text_vectors[:, :0].copy()
    return EncodedSegment(items, texts, images, text_vectors, sp_images, sp_texts, failed)


def _encode_chunk(chunk: list[SourceItem], encoder: Encoder, writer: IndexWriter,
                  live: dict[str, LiveItem], options: BuildOptions, report: BuildReport,
                  sparse: SparseEncoder | None, origin: str | None = None) -> None:
    """Encode one checkpoint's items and stage them as a segment (plus deletion of old versions)."""
    started = time.perf_counter()
    seg = encode_segment(chunk, encoder, options, sparse=sparse,
                         keep_dense="dense" in writer.manifest["representations"], origin=origin)
    report.encode_seconds += time.perf_counter() - started
    kept = [it["id"] for it in seg.items]
    report.failed.extend(seg.failed)
    report.images_encoded += len(seg.images)
    report.texts_encoded += len(seg.texts)
    report.staged.extend(kept)
    report.updated += sum(i in live for i in kept)
    report.added += sum(i not in live for i in kept)
    # A changed item's old version goes in the same commit as its new one (or as its failure).
    for it in chunk:
        if it.id in live:
            writer.delete(live[it.id].segment, [it.id])
    if seg.items:
        writer.add_segment(seg.items, seg.images, seg.texts, seg.text_vectors, seg.sparse_images, seg.sparse_texts)


def segment_records(kept: list[SourceItem], origin: str | None = None) -> tuple[list[dict[str, Any]],
                                                                              list[dict[str, Any]]]:
    """The items.jsonl and texts.jsonl records of a segment holding ``kept`` (image rows in order)."""
    items: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    rows = 0
    for it in kept:
        row = None
        if it.image is not None:
            row, rows = rows, rows + 1
        record = {"id": it.id, "image": it.image, "row": row, "signature": it.signature,
                  "meta": it.meta, "captions": len(it.captions)}
        if origin is not None:
            record["origin"] = origin
        items.append(record)
        texts.extend({"id": f"{it.id}#{n}", "item": it.id, "text": c} for n, c in enumerate(it.captions))
    return items, texts
