"""Writing an index folder: new segments, deletions, atomic commits, compaction.

Why segments: appending a checkpoint must not rewrite the whole index (that would make a resumable
run of N items cost O(N^2) writes), and readers must never see a half-written index. Segments are
immutable once committed; deletions are tombstones; compaction rewrites live rows into one segment.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._utils import ProgressFn, atomic_write_json, display_path, fsync_dir, read_jsonl, save_npy, write_jsonl
from ..errors import IncompatibleIndexError, IndexLockedError, InputError
from ..sparse.index import SparseIndex
from .ann import AnnPolicy, build_tuned, choose_kind, min_rows_for
from .manifest import FORMAT_VERSION, MANIFEST, SEGMENTS_DIR, new_manifest, read_manifest
from .store import IMAGES_SPARSE, TEXTS_SPARSE, read_tombstones

LOCK = ".lock"
SHARDS_DIR = ".shards"  # encoded shards of a distributed run, waiting to become segments
LOCK_POLL_SECONDS = 0.02  # short: another writer (the server) may hold the lock only between its commits


def is_temp_file(name: str) -> bool:
    """A write-then-rename temporary (``atomic_write_bytes``, ANN saves): ``.NAME.<random>.tmp``.
    One left behind was never renamed into place, so no commit refers to it."""
    return name.startswith(".") and name.endswith(".tmp")
COMPACT_MAX_SEGMENTS = 8
COMPACT_DEAD_FRACTION = 0.3


class LiveItem(NamedTuple):
    """Where a live item is stored, its content signature, and who added it (``origin``: None for
    items from the index's source, ``"api"`` for items added over the HTTP API)."""

    segment: str
    signature: str
    origin: str | None


class IndexWriter:
    """Exclusive writer of one index folder. Use as a context manager (it holds a file lock).

    Changes (``add_segment``, ``delete``) become visible only at ``commit``.

    ``lock_timeout``: how long to wait for another writer (``itr serve`` between its commits, another
    ``itr index``) before raising IndexLockedError; ``on_wait`` is called once, with a message, when
    the lock is busy and the writer starts waiting.
    """

    def __init__(self, path: str | os.PathLike[str], *, encoder: dict[str, Any], source: str | None = None,
                 reset: bool = False, reprs: list[str] | None = None, sparse: dict[str, Any] | None = None,
                 lock_timeout: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        self.root = Path(path)
        self._encoder = encoder
        self._reprs = list(reprs or ["dense"])
        self._sparse = sparse
        if "sparse" in self._reprs and sparse is None:
            raise ValueError("a sparse representation needs the sparse encoder's description")
        self._source = source
        self._reset = reset
        self._lock_timeout = lock_timeout
        self._on_wait = on_wait
        self._lock_fd: int | None = None

    def __enter__(self) -> IndexWriter:
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{display_path(self.root)}: exists and is not a folder")
        exists = (self.root / MANIFEST).is_file()
        # Only what a writer itself leaves before its first commit may be there already (a killed
        # first commit leaves the lock, segments and a temporary manifest: the next run resumes).
        if self.root.exists() and not exists and any(p.name not in (LOCK, SEGMENTS_DIR, SHARDS_DIR)
                                                     and not is_temp_file(p.name) for p in self.root.iterdir()):
            raise InputError(f"{display_path(self.root)}: folder is not empty and holds no ITR index; "
                             "choose a new --out folder")
        (self.root / SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            self._take_lock(self._lock_fd)
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise
        try:
            self._load_state(exists)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _take_lock(self, fd: int) -> None:
        # Polled rather than a blocking flock: a blocking call cannot be given a timeout from a
        # thread, and the short interval still finds the gaps between a server's group commits.
        deadline = time.monotonic() + self._lock_timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    after = f" for {self._lock_timeout:.0f} s" if self._lock_timeout > 0 else ""
                    raise IndexLockedError(
                        f"{display_path(self.root)}: another process (itr serve, itr index) is writing this index"
                        f"{' and held it' + after if after else ''}; retry when it is done, or wait longer with "
                        "--lock-timeout SECONDS") from None
                if not waited and self._on_wait is not None:
                    self._on_wait(f"{display_path(self.root)} is being written by another process; waiting up to "
                                  f"{self._lock_timeout:.0f} s for it")
                waited = True
                time.sleep(LOCK_POLL_SECONDS)

    def set_source(self, source: str) -> None:
        """Record ``source`` as what the index is built from (at the next commit)."""
        if self.manifest.get("source") != source:
            self.manifest["source"] = source
            self._dirty = True

    def _load_state(self, exists: bool) -> None:
        old = read_manifest(self.root) if exists else None
        if old is not None and not self._reset and old["encoder"]["fingerprint"] != self._encoder["fingerprint"]:
            built, new = old["encoder"], self._encoder
            raise IncompatibleIndexError(
                f"{display_path(self.root)} was built with model '{built['spec']}' ({built['fingerprint']}); to "
                f"index with '{new['spec']}' ({new['fingerprint']}) pass --rebuild, or use --model {built['spec']}"
            )
        if old is not None and not self._reset:
            was = "both" if len(old["representations"]) == 2 else old["representations"][0]
            now = "both" if len(self._reprs) == 2 else self._reprs[0]
            old_sparse = (old.get("sparse") or {}).get("fingerprint")
            if was != now or old_sparse != (self._sparse or {}).get("fingerprint"):
                raise IncompatibleIndexError(
                    f"{display_path(self.root)} holds --repr {was}" + (f" (sparse model {old['sparse']['spec']})" if
                                                                     old_sparse else "")
                    + f"; to store --repr {now}" + (f" (sparse model {self._sparse['spec']})" if self._sparse else "")
                    + f" pass --rebuild, or index with --repr {was}")
            old["format_version"] = FORMAT_VERSION  # a version 1 index is a valid version 2 one
            self.manifest = old
            self.tombstones = {k: set(v) for k, v in read_tombstones(self.root, old).items()}
        else:
            self.manifest = new_manifest(self._encoder, self._source, self._reprs, self._sparse)
            if old is not None:  # --rebuild: keep numbering going so old files are never reused
                self.manifest["generation"] = old.get("generation", 0)
                self.manifest["next_segment"] = old.get("next_segment", 1)
            self.tombstones = {}
        self._pending_segments: list[dict[str, Any]] = []
        self._items_cache: dict[str, list[dict[str, Any]]] = {}
        self._lookup_cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._dirty = old is None or self._reset
        # Leftovers of a writer that died before committing are unreachable: remove them now.
        committed = old if old is not None else self.manifest
        self._collect_garbage(committed)

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reading the state the writer will build on ------------------------------------------------
    def _segment_items(self, name: str) -> list[dict[str, Any]]:
        if name not in self._items_cache:
            self._items_cache[name] = read_jsonl(self.root / SEGMENTS_DIR / name / "items.jsonl")
        return self._items_cache[name]

    def live_items(self) -> dict[str, LiveItem]:
        """item id -> LiveItem for every live item, pending segments included."""
        live: dict[str, LiveItem] = {}
        for seg in [*self.manifest["segments"], *self._pending_segments]:
            deleted = self.tombstones.get(seg["name"], set())
            for it in self._segment_items(seg["name"]):
                if it["id"] not in deleted:
                    live[it["id"]] = LiveItem(seg["name"], it["signature"], it.get("origin"))
        return live

    # -- changes -------------------------------------------------------------------------------------
    def add_segment(self, items: Sequence[dict[str, Any]], images: np.ndarray,
                    texts: Sequence[dict[str, Any]], text_vectors: np.ndarray,
                    sparse_images: Any = None, sparse_texts: Any = None) -> str:
        """Write a segment folder (not yet visible). ``items`` carry ``row`` (image row or None).

        Dense arrays are (n, dim), or (n, 0) when the index keeps no dense vectors; the sparse
        matrices (CSR, one row per image / caption) are required when it keeps sparse ones.
        """
        reprs = self.manifest["representations"]
        dim = int(self.manifest["dim"]) if "dense" in reprs else 0
        if "sparse" in reprs and (sparse_images is None or sparse_texts is None
                                  or sparse_images.shape[0] != len(images) or sparse_texts.shape[0] != len(text_vectors)):
            raise ValueError("this index keeps sparse vectors: give one sparse row per image and per caption")
        for arr in (images, text_vectors):
            if arr.ndim != 2 or arr.shape[1] != dim or arr.dtype != np.float32:
                raise ValueError(f"segment vectors must be float32 (n, {dim}), got {arr.dtype} {arr.shape}")
        name = f"seg-{self.manifest['next_segment']:06d}"
        tmp = self.root / SEGMENTS_DIR / f".{name}.tmp"
        write_segment_files(tmp, items, images, texts, text_vectors, sparse_images, sparse_texts,
                            self.manifest["sparse"] if "sparse" in reprs else None)
        return self.adopt_segment(tmp, items)

    def adopt_segment(self, folder: Path, items: Sequence[dict[str, Any]] | None = None) -> str:
        """Move a complete segment folder (``write_segment_files``; for example one that a Ray
        worker wrote) into the index under the next segment name; visible at ``commit``.

        Raises:
            IncompatibleIndexError: its vectors have another dimension than the index.
        """
        reprs = self.manifest["representations"]
        dim = int(self.manifest["dim"]) if "dense" in reprs else 0
        items = list(items) if items is not None else read_jsonl(folder / "items.jsonl")
        n_images = n_texts = 0
        for side in ("images", "texts"):
            arr = np.load(folder / f"{side}.npy", mmap_mode="r", allow_pickle=False)
            if arr.ndim != 2 or arr.shape[1] != dim or arr.dtype != np.float32:
                raise IncompatibleIndexError(f"{display_path(folder)}: {side} vectors are {arr.dtype} {arr.shape}, the "
                                             f"index {display_path(self.root)} keeps float32 (n, {dim}); they come "
                                             "from another model or representation")
            n_images, n_texts = (len(arr), n_texts) if side == "images" else (n_images, len(arr))
        if "sparse" in reprs and not ((folder / IMAGES_SPARSE).is_dir() and (folder / TEXTS_SPARSE).is_dir()):
            raise IncompatibleIndexError(f"{display_path(folder)}: no sparse vectors, and {display_path(self.root)} keeps them")
        name = f"seg-{self.manifest['next_segment']:06d}"
        self.manifest["next_segment"] += 1
        os.replace(folder, self.root / SEGMENTS_DIR / name)
        fsync_dir(self.root / SEGMENTS_DIR)  # the rename must be durable before a manifest names it
        self._items_cache[name] = list(items)
        self._pending_segments.append({"name": name, "items": len(items), "images": n_images, "texts": n_texts})
        counts = self.manifest["counts"]
        counts["items"] += len(items)
        counts["images"] += n_images
        counts["texts"] += n_texts
        self._dirty = True
        return name

    def delete(self, segment: str, item_ids: Sequence[str]) -> None:
        """Mark items of ``segment`` deleted (ids not in it, or already deleted, are ignored)."""
        dead = self.tombstones.setdefault(segment, set())
        by_id = self._segment_lookup(segment)
        counts = self.manifest["counts"]
        for item_id in item_ids:
            it = by_id.get(item_id)
            if it is None or item_id in dead:
                continue
            dead.add(item_id)
            counts["items"] -= 1
            counts["images"] -= it.get("row") is not None
            counts["texts"] -= it.get("captions", 0)
            self._dirty = True

    def _segment_lookup(self, name: str) -> dict[str, dict[str, Any]]:
        if name not in self._lookup_cache:
            self._lookup_cache[name] = {it["id"]: it for it in self._segment_items(name)}
        return self._lookup_cache[name]

    def commit(self, *, complete: bool = True) -> None:
        """Make all pending changes visible at once (manifest replaced atomically)."""
        if not self._dirty and self.manifest.get("complete") == complete:
            return
        m = self.manifest
        m["segments"] = [*m["segments"], *self._pending_segments]
        m["generation"] += 1
        m["complete"] = complete
        m["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        m.setdefault("created_at", m["updated_at"])
        live_names = {s["name"] for s in m["segments"]}
        self.tombstones = {k: v for k, v in self.tombstones.items() if k in live_names and v}
        if self.tombstones:
            tomb_name = f"tombstones-{m['generation']:06d}.json"
            atomic_write_json(self.root / tomb_name, {k: sorted(v) for k, v in sorted(self.tombstones.items())})
            m["tombstones"] = tomb_name
        else:
            m["tombstones"] = None
        atomic_write_json(self.root / MANIFEST, m)
        self._pending_segments = []
        self._dirty = False
        self._collect_garbage(m)

    def _collect_garbage(self, manifest: dict[str, Any]) -> None:
        """Remove files the committed manifest does not refer to: old tombstones, compacted or
        abandoned segments. Readers that opened an older manifest keep their memory maps (POSIX
        unlink semantics)."""
        keep = {s["name"]: s for s in manifest["segments"]}
        for d in (self.root / SEGMENTS_DIR).iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
                continue
            ann_files = {a["file"] for a in (keep[d.name].get("ann") or {}).values()}
            for f in d.iterdir():  # replaced ANN structures, ones no commit named, unfinished saves
                if (f.name.startswith("ann-") and f.suffix == ".faiss" and f.name not in ann_files) or is_temp_file(f.name):
                    f.unlink(missing_ok=True)
        for f in self.root.iterdir():
            if (f.name.startswith("tombstones-") and f.name != manifest.get("tombstones")) or (
                    is_temp_file(f.name) and f.is_file()):
                f.unlink(missing_ok=True)

    # -- approximate search structures ---------------------------------------------------------------
    @property
    def ann_policy(self) -> AnnPolicy:
        return AnnPolicy.from_json(self.manifest.get("ann"))

    def build_ann(self, policy: AnnPolicy | None = None, progress: ProgressFn | None = None) -> list[str]:
        """Make every committed segment follow ``policy`` (default: the index's own), then commit.

        A segment side gets the FAISS index the policy names (``auto``: chosen from the memory
        budget shared by all the index's vectors), or none when it is smaller than ``min_rows``;
        structures built under another policy are replaced, and ``exact`` removes them all. Segments
        never change: the new file sits beside the segment's vectors and the manifest names it.
        Returns "segment/side: factory" for each index built. Commits only when something changed.
        """
        self.commit(complete=self.manifest["complete"])
        policy = policy or self.ann_policy
        if policy.enabled and "dense" not in self.manifest["representations"]:
            raise InputError(f"{display_path(self.root)} keeps no dense vectors (--repr sparse): --index "
                             f"{policy.kind} needs them; rebuild with --repr both")
        wanted = policy.to_json() if policy.enabled else None
        changed = self.manifest.get("ann") != wanted
        self.manifest["ann"] = wanted
        segs = self.manifest["segments"]
        dim = int(self.manifest["dim"])
        total = sum(s["images"] + s["texts"] for s in segs)
        plan: list[tuple[dict[str, Any], str, str, float | None]] = []
        for seg in segs:
            for side in ("images", "texts"):
                n = int(seg[side])
                budget = policy.max_memory * n / total if policy.max_memory else None  # shared by row count
                if not policy.enabled or n < policy.min_rows:
                    kind = "exact"
                elif policy.kind == "auto":
                    kind = choose_kind(n, dim, budget, exact_below=policy.min_rows)
                else:
                    kind = policy.kind
                if n < min_rows_for(kind):  # too few vectors to train it; exact is instant there anyway
                    kind = "exact"
                current = (seg.get("ann") or {}).get(side)
                if kind == "exact":
                    if current is not None:
                        del seg["ann"][side]
                        changed = True
                elif current is None or current.get("policy") != _policy_key(policy, kind):
                    plan.append((seg, side, kind, budget))
        built = []
        for done, (seg, side, kind, budget) in enumerate(plan):
            if progress:
                progress(done, len(plan))
            folder = self.root / SEGMENTS_DIR / seg["name"]
            vectors = np.load(folder / f"{side}.npy", mmap_mode="r", allow_pickle=False)
            other = np.load(folder / f"{'texts' if side == 'images' else 'images'}.npy", mmap_mode="r",
                            allow_pickle=False)  # real queries come from the other modality
            ann = build_tuned(vectors, kind, other if len(other) else None, policy, budget)
            name = f"ann-{side}-g{self.manifest['generation'] + 1:06d}.faiss"
            size = ann.save(folder / name)
            fsync_dir(folder)
            seg.setdefault("ann", {})[side] = {**ann.info, "file": name, "bytes": size,
                                               "policy": _policy_key(policy, kind)}
            built.append(f"{seg['name']}/{side}: {ann.info['factory']}")
        if progress:
            progress(len(plan), len(plan))
        for seg in segs:
            if seg.get("ann") == {}:
                del seg["ann"]
        if changed or plan:
            self._dirty = True
            self.commit(complete=self.manifest["complete"])
        return built

    # -- compaction ----------------------------------------------------------------------------------
    def dead_fraction(self) -> float:
        total = sum(s["items"] for s in self.manifest["segments"])
        dead = sum(len(v) for v in self.tombstones.values())
        return dead / total if total else 0.0

    def maybe_compact(self, *, max_segments: int = COMPACT_MAX_SEGMENTS,
                      dead_fraction: float = COMPACT_DEAD_FRACTION) -> bool:
        """Merge segments when there are too many, rewrite everything when too much is deleted.

        Tiered: past ``max_segments``, only the smallest segments are merged (into one), so a
        trickle of small additions to a large index never rewrites the large segments.
        Returns whether anything was rewritten.
        """
        segs = self.manifest["segments"]
        if self.dead_fraction() > dead_fraction:
            self.compact()
            return True
        if len(segs) <= max_segments:
            return False
        by_size = sorted(segs, key=lambda s: (s["items"], s["name"]))
        self.compact([s["name"] for s in by_size[: len(segs) - max_segments // 2 + 1]])
        return True

    def compact(self, names: Sequence[str] | None = None) -> None:
        """Rewrite the live rows of segments ``names`` (default: all) into one segment, then commit."""
        self.commit(complete=self.manifest["complete"])
        chosen = set(names) if names is not None else {s["name"] for s in self.manifest["segments"]}
        old = [s for s in self.manifest["segments"] if s["name"] in chosen]
        if not old or (len(old) == 1 and not self.tombstones.get(old[0]["name"])):
            return
        items: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []
        img_parts: list[np.ndarray] = []
        txt_parts: list[np.ndarray] = []
        sparse = "sparse" in self.manifest["representations"]
        sp_img: list[Any] = []
        sp_txt: list[Any] = []
        for seg in old:
            folder = self.root / SEGMENTS_DIR / seg["name"]
            deleted = self.tombstones.get(seg["name"], set())
            seg_items = self._segment_items(seg["name"])
            seg_texts = read_jsonl(folder / "texts.jsonl")
            images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
            vectors = np.load(folder / "texts.npy", mmap_mode="r", allow_pickle=False)
            rows = [it["row"] for it in seg_items if it["id"] not in deleted and it.get("row") is not None]
            img_parts.append(np.asarray(images[rows]) if rows else np.zeros((0, images.shape[1]), np.float32))
            base = sum(len(p) for p in img_parts[:-1])
            k = 0
            for it in seg_items:
                if it["id"] in deleted:
                    continue
                if it.get("row") is not None:
                    it = {**it, "row": base + k}
                    k += 1
                items.append(it)
            keep_t = [i for i, t in enumerate(seg_texts) if t["item"] not in deleted]
            texts.extend(seg_texts[i] for i in keep_t)
            txt_parts.append(np.asarray(vectors[keep_t]) if keep_t else np.zeros((0, vectors.shape[1]), np.float32))
            if sparse:  # same quantisation scale in every segment: requantising is lossless
                sp_img.append(SparseIndex.open(folder / IMAGES_SPARSE).dequantised()[rows])
                sp_txt.append(SparseIndex.open(folder / TEXTS_SPARSE).dequantised()[keep_t])
        dim = int(self.manifest["dim"]) if "dense" in self.manifest["representations"] else 0
        # The merged rows leave the counts and come back through add_segment.
        counts = self.manifest["counts"]
        counts["items"] -= len(items)
        counts["images"] -= sum(len(p) for p in img_parts)
        counts["texts"] -= len(texts)
        self.manifest["segments"] = [s for s in self.manifest["segments"] if s["name"] not in chosen]
        self.tombstones = {k: v for k, v in self.tombstones.items() if k not in chosen}
        self.add_segment(items, np.concatenate(img_parts) if img_parts else np.zeros((0, dim), np.float32),
                         texts, np.concatenate(txt_parts) if txt_parts else np.zeros((0, dim), np.float32),
                         _vstack(sp_img) if sparse else None, _vstack(sp_txt) if sparse else None)
        self.commit(complete=self.manifest["complete"])


def write_segment_files(folder: Path, items: Sequence[dict[str, Any]], images: np.ndarray,
                        texts: Sequence[dict[str, Any]], text_vectors: np.ndarray, sparse_images: Any = None,
                        sparse_texts: Any = None, sparse_info: dict[str, Any] | None = None) -> None:
    """Write the files of one segment into ``folder`` (replaced if it exists; not yet in any index).
    ``sparse_info``: the index's sparse description (vocab_size, scale) when it keeps sparse vectors."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    save_npy(folder / "images.npy", images)
    save_npy(folder / "texts.npy", text_vectors)
    if sparse_info is not None:
        for sub, mat in ((IMAGES_SPARSE, sparse_images), (TEXTS_SPARSE, sparse_texts)):
            SparseIndex.build(mat, int(sparse_info["vocab_size"]), scale=float(sparse_info["scale"])).save(folder / sub)
    write_jsonl(folder / "items.jsonl", items)
    write_jsonl(folder / "texts.jsonl", texts)


def _policy_key(policy: AnnPolicy, kind: str) -> str:
    """What an ANN structure was built under: when this changes, it is rebuilt."""
    return f"{kind}|{policy.max_memory}|{policy.recall}|{policy.max_latency_ms}"  # not mmap: same file either way


def _vstack(parts: list[Any]) -> Any:
    from scipy import sparse as sp

    return sp.vstack(parts, format="csr") if parts else None
