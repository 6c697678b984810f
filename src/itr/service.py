"""A long-lived handle on one index for servers: searches run while items are added and deleted.

Reads never wait for writes. Every request takes the current *snapshot* (an opened ``DenseIndex``,
immutable) and answers from it; a write commits a new generation of the index on disk (atomic
manifest swap, see ``itr.index.writer``) and only then swaps in a new snapshot, which shares every
unchanged segment with the old one. A snapshot's files stay readable after a compaction removes them
(POSIX unlink semantics), so an in-flight search never sees a half-applied change.

Writes go through one committer thread that applies whatever requests are waiting as a single
commit (group commit): under concurrent uploads that makes one segment and one fsync'd manifest per
group instead of per item, and it serialises writers without a lock held across request threads. A
request is acknowledged only after its commit is durable, so a crash (even ``kill -9``) loses no
acknowledged item; files of a commit that never happened are removed at the next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ._utils import atomic_write_bytes, display_path
from .backends import is_remote
from .collection import SourceItem
from .encoders.base import Encoder
from .errors import BadImageError, IndexLockedError, InputError, ItrError, NotFoundError, ReadOnlyError
from .images import image_format, load_image_bytes
from .index.build import BuildOptions, stage_items
from .index.manifest import MANIFEST
from .index.store import DenseIndex
from .index.writer import IndexWriter
from .records import check_meta, check_text, id_problem, printable_path
from .search import Mode, Searcher, SearchOptions, SearchResponse, Target, open_index

if TYPE_CHECKING:
    from .backends.milvus import MilvusIndex
from .thumbnails import Thumbnail, ThumbnailCache

log = logging.getLogger(__name__)

MEDIA_DIR = "media"
"""Uploaded images are stored in the index folder, under names the server chooses."""
API_ORIGIN = "api"
DEFAULTS = SearchOptions()
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True, kw_only=True)
class ServiceLimits:
    """Request limits: they bound the work and memory one request can cost."""

    max_k: int = 100
    max_query_chars: int = 1000
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000  # uploads above this are refused before decoding (decompression bombs)
    max_captions: int = 32
    max_caption_chars: int = 2000
    max_meta_bytes: int = 16 * 1024
    max_id_chars: int = 256
    max_batch: int = 64  # queries encoded together under load (1: one model call per query)


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item to add: an image (encoded file bytes), captions, or both."""

    image: bytes | None = None
    captions: tuple[str, ...] = ()
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    image_name: str = "upload"


@dataclass(frozen=True, slots=True)
class AddResult:
    id: str
    status: str  # "added" or "updated"


@dataclass(slots=True)
class _Op:
    kind: str  # "add" or "delete"
    item_id: str
    future: Future[Any]
    item: SourceItem | None = None


class _SerialEncoder:
    """Runs one model call at a time, and batches the calls that queue up meanwhile.

    Torch already spreads one call over every core, so concurrent calls from request threads would
    only oversubscribe them. Instead, whichever thread gets the model next encodes every query waiting
    by then in one batch (leader/follower combining): on 2 cores the built-in text model takes 6.7 ms
    for one query and 41 ms for 32, so under load a crowd of queries costs a few batches, not a queue
    of single calls.

    Images are decoded and preprocessed by the calling request thread, before it queues for the
    model: only the model call itself is serialised, so one slow image never delays other queries.
    """

    def __init__(self, encoder: Encoder, max_batch: int = 64) -> None:
        self._encoder = encoder
        self.max_batch = max(1, max_batch)
        self._model = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: dict[str, list[tuple[Sequence[Any], Future[np.ndarray]]]] = {"texts": [], "pixels": []}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def _combined(self, kind: str, inputs: Sequence[Any]) -> np.ndarray:
        mine: Future[np.ndarray] = Future()
        with self._pending_lock:
            self._pending[kind].append((inputs, mine))
        while not mine.done():
            with self._model:
                if mine.done():
                    break
                with self._pending_lock:
                    queue_ = self._pending[kind]
                    take, n = 0, 0
                    while take < len(queue_) and (take == 0 or n + len(queue_[take][0]) <= self.max_batch):
                        n += len(queue_[take][0])
                        take += 1
                    batch, self._pending[kind] = queue_[:take], queue_[take:]
                flat = [x for inputs_, _ in batch for x in inputs_]
                try:
                    vectors = (self._encoder.encode_texts(flat) if kind == "texts"
                               else self._encoder.encode_pixels(np.stack(flat)))
                except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
                    for _, fut in batch:
                        fut.set_exception(exc)
                    continue
                start = 0
                for inputs_, fut in batch:
                    fut.set_result(vectors[start : start + len(inputs_)])
                    start += len(inputs_)
        return mine.result()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._combined("texts", list(texts))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self._encoder.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([self._encoder.preprocess_image(im.convert("RGB")) for im in images]))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, self._encoder.dim), dtype=np.float32)
        return self._combined("pixels", list(pixels))


class _SerialReranker:
    """A re-ranker whose calls from request threads run one at a time."""

    def __init__(self, reranker: Any) -> None:
        self._inner = reranker
        self._lock = threading.Lock()
        self.spec = reranker.spec
        self.fingerprint = reranker.fingerprint

    def score_pairs(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._inner.score_pairs(images, texts)  # type: ignore[no-any-return]


class IndexService:
    """Thread-safe search, item look-up, thumbnails and incremental add/delete on one index folder.

    Args:
        root: the index folder.
        encoder: the model the index was built with (checked).
        sparse: its lexicon encoder, for indexes that keep sparse vectors.
        read_only: refuse adds and deletes (and never write to the folder).
        thumbnails: the thumbnail cache (default: under the user's cache folder).
        refresh_seconds: how often a read checks whether another process committed to the index.
        lock_timeout: how long a write waits for another writer (``itr index``) to finish.
        index: ``root`` already opened (saves reading it again).
    """

    def __init__(self, root: str | os.PathLike[str], encoder: Encoder, sparse: Any = None, *,
                 read_only: bool = False, limits: ServiceLimits = ServiceLimits(),
                 thumbnails: ThumbnailCache | None = None, refresh_seconds: float = 1.0,
                 lock_timeout: float = 10.0, index: DenseIndex | MilvusIndex | None = None,
                 reranker: Any = None, rerank_depth: int = 50) -> None:
        # A back end (milvus:...) is served read-only: its data is written by `itr export` from the
        # index folder, which stays the source of truth.
        self.remote = is_remote(root)
        self.root: Path = Path(root).resolve() if not self.remote else root  # type: ignore[assignment]
        self.limits = limits
        self.read_only = read_only or self.remote
        self.refresh_seconds = refresh_seconds
        self.lock_timeout = lock_timeout
        self._encoder = _SerialEncoder(encoder, limits.max_batch)
        self._sparse = sparse
        # One re-ranker call at a time: a cross-encoder batch already uses every core.
        self.reranker = _SerialReranker(reranker) if reranker is not None else None
        self.rerank_depth = rerank_depth
        self._thumbs = thumbnails or ThumbnailCache(max_pixels=limits.max_pixels)
        self._refresh_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._stamp = self._manifest_stamp()
        if self.remote:
            opened: DenseIndex | MilvusIndex = index if index is not None else open_index(str(root))
        else:
            opened = index if isinstance(index, DenseIndex) and index.root.resolve() == self.root else DenseIndex.open(self.root)
        self._searcher = Searcher(self._encoder, opened, sparse, self.reranker)  # type: ignore[arg-type]
        self._checked = time.monotonic()
        self._ops: queue.Queue[_Op | None] = queue.Queue()
        self._committer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        if not self.read_only:
            self._collect_media_garbage()

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, model: str | None = None, **kwargs: Any) -> IndexService:
        """Open ``root`` with the encoders recorded in its manifest (``model``, if given, must match)."""
        from .search import open_searcher

        s = open_searcher(root, model)
        return cls(root, s.encoder, s.sparse, index=s.index, **kwargs)  # type: ignore[arg-type]

    # -- snapshots ----------------------------------------------------------------------------------
    def _manifest_stamp(self) -> tuple[int, int]:
        if self.remote:  # a back end's export changes under its own consistency rules, not by manifest swaps
            return (0, 0)
        try:
            st = os.stat(self.root / MANIFEST)
        except OSError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def _reload(self) -> None:
        stamp = self._manifest_stamp()
        index = DenseIndex.open(self.root, reuse=self._searcher.index)
        with self._swap_lock:
            # The committer and a refreshing request may both reload; the older snapshot must never
            # replace the newer one (a client must see its acknowledged write on its next request).
            if index.generation >= self._searcher.index.generation:
                self._searcher = Searcher(self._encoder, index, self._sparse, self.reranker)  # type: ignore[arg-type]
                self._stamp = stamp

    @property
    def searcher(self) -> Searcher:
        """The current snapshot's searcher. Also picks up commits made by other processes (checked at
        most every ``refresh_seconds``, by one request while the others go on with the old snapshot)."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds and self._refresh_lock.acquire(blocking=False):
            try:
                self._checked = now
                if self._manifest_stamp() != self._stamp:
                    self._reload()
            finally:
                self._refresh_lock.release()
        return self._searcher

    @property
    def index(self) -> DenseIndex | MilvusIndex:
        return self.searcher.index

    # -- what responses show ------------------------------------------------------------------------
    @property
    def _pixels_hint(self) -> str:
        return f"this server accepts images of at most {self.limits.max_pixels / 1e6:.0f} MP"

    @property
    def name(self) -> str:
        """The index as responses name it: its folder's name (or the back end's address), never the
        server's absolute path."""
        return str(self.root) if self.remote else display_path(self.root.name)

    def public_path(self, path: str | None) -> str | None:
        """An image path as responses show it: relative to the indexed source's folder (or, for
        uploads, to the index folder), with undecodable bytes of the name as ``\\xNN`` escapes. Paths
        outside both show only the file name: a client never learns the server's folder layout."""
        if path is None:
            return None
        p = Path(path)
        source = self.index.manifest.get("source")
        bases = [] if self.remote else [self.root]
        if source:
            src = Path(source)
            bases.insert(0, src if not src.suffix else src.parent)
        for base in bases:
            try:
                return printable_path(p.relative_to(base).as_posix())
            except ValueError:
                continue
        return printable_path(p.name)

    # -- reads --------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        idx = self.index
        reprs = idx.representations
        modes = ([Mode.DENSE.value] if "dense" in reprs else []) + (
            [Mode.SPARSE.value] + ([Mode.HYBRID.value] if "dense" in reprs else []) if "sparse" in reprs else [])
        enc = idx.encoder_info
        return {"index": self.name, "model": enc["spec"], "fingerprint": enc["fingerprint"], "dim": idx.dim,
                "counts": idx.counts, "representations": reprs, "modes": modes,
                "sparse_model": (idx.sparse_info or {}).get("spec"), "segments": len(idx.segments),
                "backend": "milvus" if self.remote else "folder",
                "generation": idx.generation, "read_only": self.read_only,
                "limits": {"max_k": self.limits.max_k, "max_query_chars": self.limits.max_query_chars,
                           "max_upload_bytes": self.limits.max_upload_bytes}}

    def _check(self, options: SearchOptions) -> None:
        if not 1 <= options.k <= self.limits.max_k:
            raise InputError(f"k must be between 1 and {self.limits.max_k} (got {options.k})")

    def search_text(self, query: str, options: SearchOptions = DEFAULTS) -> SearchResponse:
        self._check(options)
        if len(query) > self.limits.max_query_chars:
            raise InputError(f"query is {len(query)} characters long; the limit is {self.limits.max_query_chars}")
        return self.searcher.query_texts([query], options)[0]

    def search_image(self, data: bytes, options: SearchOptions = DEFAULTS, *,
                     name: str = "upload") -> SearchResponse:
        """Search with an uploaded image (encoded bytes)."""
        self._check(options)
        s = self.searcher
        image = load_image_bytes(data, name, draft_size=s.encoder.draft_size, max_pixels=self.limits.max_pixels,
                                 too_large_hint=self._pixels_hint)
        return s.query_image(image, options)  # preprocessed in this thread; only the model call queues

    def similar(self, item_id: str, options: SearchOptions = DEFAULTS) -> SearchResponse:
        """"More like this": search with an indexed item's own stored vector; the item itself is left out."""
        self._check(options)
        s = self.searcher
        found = s.index.item_vector(item_id)
        if found is None:
            raise NotFoundError(f"no item with id '{item_id}'")
        vector, modality = found
        res = s.query_vector(vector, modality, replace(options, k=options.k + 1))
        hits = [h for h in res.hits if not (h.kind == "image" and h.item_id == item_id)][: options.k]
        return replace(res, hits=hits)

    def item(self, item_id: str) -> dict[str, Any]:
        """A live item's record: id, image path (or None), captions, meta, origin."""
        rec = self.index.item(item_id)
        if rec is None:
            raise NotFoundError(f"no item with id '{item_id}'")
        return {"id": rec["id"], "image": rec.get("image"), "captions": rec["texts"], "meta": rec.get("meta", {}),
                "origin": rec.get("origin")}

    def public_item(self, item_id: str) -> dict[str, Any]:
        """``item`` as responses show it (``image`` as ``public_path``)."""
        rec = self.item(item_id)
        return {**rec, "image": self.public_path(rec["image"])}

    def thumbnail(self, item_id: str, size: int = 256) -> Thumbnail:
        """The item's image, resized. The path comes from the index record, never from the request."""
        rec = self.item(item_id)
        if rec["image"] is None:
            raise NotFoundError(f"item '{item_id}' has no image (it is a text-only item)")
        try:
            return self._thumbs.get(rec["image"], size)
        except BadImageError as exc:
            shown = display_path(rec["image"])
            reason = str(exc).removeprefix(shown).lstrip(": ") or "unreadable"
            raise NotFoundError(f"the image of item '{item_id}' ({self.public_path(rec['image'])}) cannot be "
                                f"read: {reason}") from None

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, new: NewItem, *, timeout: float | None = 120.0) -> AddResult:
        """Add (or replace, when ``new.id`` is live) one item; returns once the commit is durable.

        Raises:
            InputError: a field is invalid or the image cannot be decoded (nothing is written).
            ReadOnlyError: the service is read-only.
            IndexLockedError: another process kept the index locked past ``lock_timeout``.
        """
        self._writable()
        item = self._validate(new)
        image_path: Path | None = None
        if new.image is not None:
            image_path = self._store_media(item.id, new.image, new.image_name)
            item = replace(item, image=str(image_path),
                           signature=item.signature + ":" + hashlib.sha256(new.image).hexdigest()[:16])
        try:
            return self._submit(_Op("add", item.id, Future(), item), timeout)  # type: ignore[no-any-return]
        except BaseException:
            if image_path is not None:
                self._drop_media([(item.id, str(image_path))])
            raise

    def delete(self, item_id: str, *, timeout: float | None = 120.0) -> None:
        """Delete a live item; returns once the commit is durable. Raises NotFoundError for an unknown id."""
        self._writable()
        self._submit(_Op("delete", item_id, Future()), timeout)

    def _writable(self) -> None:
        if self.remote:
            raise ReadOnlyError(f"{self.root} is served read-only: add or delete items in the index folder, then "
                                "run itr export again")
        if self.read_only:
            raise ReadOnlyError("this server is read-only (started with --read-only); adding and deleting "
                                "items is turned off")

    def _validate(self, new: NewItem) -> SourceItem:
        lim = self.limits
        captions = tuple(check_text(c, f"caption {n}").strip() for n, c in enumerate(new.captions, 1) if c and c.strip())
        if new.image is None and not captions:
            raise InputError("an item needs an image, at least one non-empty caption, or both")
        if len(captions) > lim.max_captions:
            raise InputError(f"{len(captions)} captions; the limit is {lim.max_captions} per item")
        for c in captions:
            if len(c) > lim.max_caption_chars:
                raise InputError(f"a caption is {len(c)} characters long; the limit is {lim.max_caption_chars}")
        check_meta(new.meta, "meta", max_bytes=lim.max_meta_bytes)
        if new.image is not None:
            if len(new.image) > lim.max_upload_bytes:
                raise InputError(f"{new.image_name}: {len(new.image)} bytes; the upload limit is {lim.max_upload_bytes}")
            # Decode fully now: a bad upload is refused before anything is written.
            load_image_bytes(new.image, new.image_name, draft_size=self._encoder.draft_size, max_pixels=lim.max_pixels,
                             too_large_hint=self._pixels_hint)
        item_id = new.id if new.id is not None else self._default_id(new, captions)
        problem = id_problem(item_id, lim.max_id_chars) if isinstance(item_id, str) else "must be a string"
        if problem is not None:
            raise InputError(f"id must be 1-{lim.max_id_chars} characters, without control characters, surrounding "
                             f"spaces, '.' or '..' segments, or a /similar or /thumbnail ending: this one {problem}")
        content = json.dumps({"captions": captions, "meta": new.meta}, sort_keys=True)
        return SourceItem(id=item_id, image=None, captions=captions, meta=dict(new.meta),
                          signature="api:" + hashlib.sha256(content.encode()).hexdigest()[:16])

    @staticmethod
    def _default_id(new: NewItem, captions: tuple[str, ...]) -> str:
        """Content-addressed: uploading the same image (or the same captions) again updates one item."""
        h = hashlib.sha256(new.image if new.image is not None else "\n".join(captions).encode())
        return f"upload/{h.hexdigest()[:16]}"

    def _store_media(self, item_id: str, data: bytes, name: str) -> Path:
        """Write an upload under a name derived from the item id and content (atomic, durable)."""
        fmt = image_format(data)
        ext = _EXTENSIONS.get(fmt or "", ".img")
        stem = hashlib.sha256(item_id.encode()).hexdigest()[:16] + "-" + hashlib.sha256(data).hexdigest()[:16]
        path = self.root / MEDIA_DIR / f"{stem}{ext}"
        if not path.exists():
            atomic_write_bytes(path, data)
        return path

    def _drop_media(self, stale: Sequence[tuple[str, str]]) -> None:
        """Remove uploaded files (item id, path) that their item no longer refers to. A media file's
        name is derived from its item's id, so no other item can refer to it; nothing outside the
        media folder is ever removed."""
        media = self.root / MEDIA_DIR
        idx = self._searcher.index
        for item_id, p in stale:
            path = Path(p)
            rec = idx.item(item_id)
            if path.parent != media or (rec is not None and rec.get("image") == p):
                continue
            path.unlink(missing_ok=True)

    def _collect_media_garbage(self) -> None:
        """Remove uploads left by adds that never committed (a crash between upload and commit)."""
        media = self.root / MEDIA_DIR
        if not media.is_dir():
            return
        try:
            with IndexWriter(self.root, **self._writer_args()):
                used = {it.get("image") for it in DenseIndex.open(self.root, reuse=self._searcher.index).items()}
                for f in media.iterdir():
                    if str(f) not in used:
                        f.unlink(missing_ok=True)
        except IndexLockedError:
            pass  # another writer is busy; the next start collects

    # -- the committer ------------------------------------------------------------------------------
    def _submit(self, op: _Op, timeout: float | None) -> Any:
        with self._start_lock:
            if self._committer is None or not self._committer.is_alive():
                self._committer = threading.Thread(target=self._run, name="itr-committer", daemon=True)
                self._committer.start()
        self._ops.put(op)
        return op.future.result(timeout=timeout)

    def close(self) -> None:
        """Finish the writes already submitted and stop the committer (and a back end's connection)."""
        if self._committer is not None and self._committer.is_alive():
            self._ops.put(None)
            self._committer.join()
        if self.remote:
            self._searcher.index.close()  # type: ignore[union-attr]

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._ops.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 512:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            while batch:
                group = _take_group(batch)
                try:
                    self._apply(group)
                except BaseException as exc:  # noqa: BLE001 - every waiting request must get an answer
                    for op in group:
                        if not op.future.done():
                            op.future.set_exception(exc if isinstance(exc, ItrError) else
                                                    ItrError(f"the index could not be changed: {exc}"))

    def _writer_args(self) -> dict[str, Any]:
        idx = self._searcher.index
        sparse = self._sparse.describe() if self._sparse is not None and "sparse" in idx.representations else None
        return {"encoder": self._encoder.describe(), "source": idx.manifest.get("source"),
                "reprs": idx.representations, "sparse": sparse}

    def _open_writer(self) -> IndexWriter:
        try:
            return IndexWriter(self.root, lock_timeout=self.lock_timeout, **self._writer_args()).__enter__()
        except IndexLockedError:
            raise IndexLockedError(f"{self.name}: another process (itr index?) has been writing this index for "
                                   f"over {self.lock_timeout:.0f} s; retry later") from None

    def _apply(self, group: list[_Op]) -> None:
        writer = self._open_writer()
        stale: list[tuple[str, str]] = []
        try:
            live = writer.live_items()
            if group[0].kind == "delete":
                results: dict[int, Any] = {}
                for i, op in enumerate(group):
                    old = live.get(op.item_id)
                    if old is None:
                        results[i] = NotFoundError(f"no item with id '{op.item_id}'")
                        continue
                    rec = self._searcher.index.item(op.item_id)
                    if rec is not None and rec.get("origin") == API_ORIGIN and rec.get("image"):
                        stale.append((op.item_id, rec["image"]))
                    writer.delete(old.segment, [op.item_id])
                    results[i] = None
            else:
                items = [op.item for op in group if op.item is not None]
                for it in items:
                    rec = self._searcher.index.item(it.id) if it.id in live else None
                    if rec is not None and rec.get("origin") == API_ORIGIN and rec.get("image") not in (None, it.image):
                        stale.append((it.id, rec["image"]))
                report = stage_items(writer, items, self._encoder,  # type: ignore[arg-type]
                                     options=BuildOptions(workers=1, max_pixels=self.limits.max_pixels),
                                     sparse=self._sparse, origin=API_ORIGIN)
                staged = set(report.staged)
                results = {i: (AddResult(op.item_id, "updated" if op.item_id in live else "added")
                               if op.item_id in staged else
                               InputError(next((f for f in report.failed), f"item '{op.item_id}' could not be encoded")))
                           for i, op in enumerate(group)}
            writer.commit()
            self._reload()
            for i, op in enumerate(group):  # durable and visible: acknowledge
                r = results[i]
                if isinstance(r, BaseException):
                    op.future.set_exception(r)
                else:
                    op.future.set_result(r)
            self._drop_media(stale)
            try:
                if writer.maybe_compact():
                    if writer.ann_policy.enabled:  # a merged segment gets its ANN structure again
                        writer.build_ann()
                    self._reload()
            except Exception:  # a failed merge leaves the committed segments as they were
                log.exception("merging segments of %s failed; the index is unchanged", self.root)
        finally:
            writer.__exit__()


def _take_group(batch: list[_Op]) -> list[_Op]:
    """Pop the longest run of same-kind operations on distinct ids from the front of ``batch``:
    a run is one commit, and order between an add and a delete of the same id is kept."""
    group: list[_Op] = []
    ids: set[str] = set()
    while batch and batch[0].kind == (group[0].kind if group else batch[0].kind) and batch[0].item_id not in ids:
        op = batch.pop(0)
        ids.add(op.item_id)
        group.append(op)
    return group


__all__ = ["AddResult", "IndexService", "NewItem", "ServiceLimits", "Target"]
