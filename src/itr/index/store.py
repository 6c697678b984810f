"""Reading an index folder and searching it exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import display_path, read_jsonl
from ..errors import IncompatibleIndexError, InputError
from ..sparse.index import SparseIndex
from ..types import Embeddings, Hit, Target
from .ann import AnnIndex, AnnQuery, live_bitmap, rescore_candidates
from .manifest import SEGMENTS_DIR, read_manifest

IMAGES_SPARSE = "images-sparse"
TEXTS_SPARSE = "texts-sparse"
Candidate = tuple[float, int, int]
"""(score, segment position, row): a result before it becomes a Hit."""


@dataclass(slots=True)
class Segment:
    """One committed segment, loaded: vectors (memory-mapped), records, and live-row masks."""

    name: str
    images: np.ndarray  # (n_images, dim) float32, memory-mapped
    texts: np.ndarray  # (n_texts, dim) float32, memory-mapped
    items: list[dict[str, Any]]
    image_items: list[dict[str, Any]]  # items with an image, in row order
    text_rows: list[dict[str, Any]]
    image_live: np.ndarray  # bool (n_images,)
    text_live: np.ndarray  # bool (n_texts,)
    meta_by_id: dict[str, dict[str, Any]]
    first_caption: dict[str, str]
    deleted: set[str]
    image_sparse: SparseIndex | None = None
    text_sparse: SparseIndex | None = None
    image_ann: AnnIndex | None = None
    text_ann: AnnIndex | None = None
    ann_entry: dict[str, Any] | None = None  # the manifest's "ann" of this segment, as loaded
    _by_id: dict[str, tuple[dict[str, Any], list[int]]] | None = None
    _live_bits: dict[Target, np.ndarray | None] | None = None  # per side, packed for FAISS; per snapshot

    def record(self, item_id: str) -> tuple[dict[str, Any], list[int]] | None:
        """(item record, its caption rows) of a live item of this segment, or None.

        The id map is built on first use and shared by every snapshot that reuses this segment.
        """
        if self._by_id is None:
            by_id: dict[str, tuple[dict[str, Any], list[int]]] = {it["id"]: (it, []) for it in self.items}
            for row, t in enumerate(self.text_rows):
                by_id[t["item"]][1].append(row)
            self._by_id = by_id
        if item_id in self.deleted:
            return None
        return self._by_id.get(item_id)

    def with_deleted(self, deleted: set[str]) -> Segment:
        """The same segment (arrays, records and id map shared) under another set of deletions."""
        if deleted == self.deleted:
            return self
        image_live = np.array([it["id"] not in deleted for it in self.image_items], dtype=bool)
        text_live = np.array([t["item"] not in deleted for t in self.text_rows], dtype=bool)
        return replace(self, image_live=image_live, text_live=text_live, deleted=deleted, _live_bits=None)

    def live_bits(self, target: Target) -> np.ndarray | None:
        """The live mask of one side packed for ANN search, computed once per snapshot (not per query)."""
        if self._live_bits is None:
            self._live_bits = {}
        if target not in self._live_bits:
            self._live_bits[target] = live_bitmap(self.side(target)[1])
        return self._live_bits[target]

    def ann(self, target: Target) -> AnnIndex | None:
        """The approximate index of the images or the captions, if the segment has one."""
        return self.image_ann if target is Target.IMAGES else self.text_ann

    def with_ann(self, root: Path, entry: dict[str, Any] | None, mmap: bool = False) -> Segment:
        """The same segment with the ANN structures the manifest now names (``mmap``: memory-mapped)."""
        if entry == self.ann_entry:
            return self
        folder = root / SEGMENTS_DIR / self.name
        anns = {side: AnnIndex.open(folder / info["file"], info, mmap=mmap) for side, info in (entry or {}).items()}
        return replace(self, image_ann=anns.get("images"), text_ann=anns.get("texts"), ann_entry=entry)

    def side(self, target: Target) -> tuple[np.ndarray, np.ndarray, SparseIndex | None]:
        """(dense vectors, live mask, sparse index) of the images or the captions."""
        if target is Target.IMAGES:
            return self.images, self.image_live, self.image_sparse
        return self.texts, self.text_live, self.text_sparse


def _load_segment(root: Path, entry: dict[str, Any], deleted: set[str], sparse: bool = False,
                  mmap: bool = False) -> Segment:
    name = entry["name"]
    folder = root / SEGMENTS_DIR / name
    images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
    texts = np.load(folder / "texts.npy", mmap_mode="r", allow_pickle=False)
    items = read_jsonl(folder / "items.jsonl")
    text_rows = read_jsonl(folder / "texts.jsonl")
    image_items = [it for it in items if it.get("row") is not None]
    image_live = np.array([it["id"] not in deleted for it in image_items], dtype=bool)
    text_live = np.array([t["item"] not in deleted for t in text_rows], dtype=bool)
    meta_by_id = {it["id"]: it.get("meta", {}) for it in items}
    first_caption: dict[str, str] = {}
    for t in text_rows:
        first_caption.setdefault(t["item"], t["text"])
    seg = Segment(name, images, texts, items, image_items, text_rows, image_live, text_live, meta_by_id,
                  first_caption, deleted)
    if sparse:
        seg.image_sparse = SparseIndex.open(folder / IMAGES_SPARSE)
        seg.text_sparse = SparseIndex.open(folder / TEXTS_SPARSE)
        if seg.image_sparse.n_docs != len(image_items) or seg.text_sparse.n_docs != len(text_rows):
            raise IncompatibleIndexError(f"{display_path(folder)}: sparse rows do not match the segment; rebuild the index")
    return seg.with_ann(root, entry.get("ann"), mmap)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; ties broken by lower index (stable)."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (scores.shape[0], n))
    sub = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -sub), axis=1)
    return np.take_along_axis(part, order, axis=1)


class ManifestFacts:
    """What an index says about itself, read from its manifest: shared by the index folder
    (``DenseIndex``) and back ends that keep the same manifest (``itr.backends.milvus``)."""

    manifest: dict[str, Any]

    @property
    def generation(self) -> int:
        """Commit number of this snapshot (grows with every commit)."""
        return int(self.manifest.get("generation", 0))

    @property
    def encoder_info(self) -> dict[str, Any]:
        return dict(self.manifest["encoder"])

    @property
    def representations(self) -> list[str]:
        return list(self.manifest["representations"])

    @property
    def sparse_info(self) -> dict[str, Any] | None:
        """What the manifest records of the sparse encoder (spec, fingerprint, vocab_size, ...)."""
        return self.manifest.get("sparse")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    def __len__(self) -> int:
        return int(self.manifest["counts"]["items"])

    def require_representation(self, representation: str) -> None:
        """Raises InputError (naming the --repr to rebuild with) when the index lacks ``representation``."""
        require_representation(display_path(str(getattr(self, "root", "the index"))), self.representations,
                               representation)

    def dense_queries(self, queries: Embeddings, k: int) -> np.ndarray:
        """Validated dense queries: k at least 1, dense vectors present, the index's dimension."""
        check_k(k)
        self.require_representation("dense")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise IncompatibleIndexError(f"query vectors have dim {q.shape[1]}, the index has dim {self.dim}")
        return q


def check_k(k: int) -> None:
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k})")


class DenseIndex(ManifestFacts):
    """A read-only view of an index folder with exact (brute-force inner product) search.

    Exact search is one BLAS matrix product per segment: at the memory-bandwidth floor for a single
    query, and the oracle that approximate back ends are tested against.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], segments: list[Segment]) -> None:
        self.root = root
        self.manifest = manifest
        self.segments = segments
        self._sparse_terms: dict[Target, np.ndarray | None] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, reuse: DenseIndex | None = None,
             ann_mmap: bool | None = None) -> DenseIndex:
        """Open the index's current commit.

        ``reuse``: an earlier snapshot of the same folder; its segments that are still committed are
        shared (segments never change once committed, only their deletions), so re-opening after an
        incremental add reads just the new segments.
        ``ann_mmap``: memory-map the approximate structures (default: as the index's policy says).
        """
        root = Path(path)
        manifest = read_manifest(root)
        tomb = read_tombstones(root, manifest)
        sparse = "sparse" in manifest["representations"]
        mmap = bool((manifest.get("ann") or {}).get("mmap")) if ann_mmap is None else ann_mmap
        old = {s.name: s for s in reuse.segments} if reuse is not None and reuse.root == root else {}
        segments = []
        for s in manifest["segments"]:
            deleted = set(tomb.get(s["name"], ()))
            seg = old.get(s["name"])
            segments.append(seg.with_deleted(deleted).with_ann(root, s.get("ann"), mmap) if seg is not None
                            else _load_segment(root, s, deleted, sparse, mmap))
        return cls(root, manifest, segments)

    def item(self, item_id: str) -> dict[str, Any] | None:
        """A live item: its record plus ``texts`` (its captions), or None."""
        for seg in self.segments:
            found = seg.record(item_id)
            if found is not None:
                it, rows = found
                return {**it, "texts": [seg.text_rows[r]["text"] for r in rows]}
        return None

    def item_vector(self, item_id: str) -> tuple[np.ndarray, str] | None:
        """A live item's stored dense vector and its modality: the image's, or (text-only items)
        the first caption's. None for an unknown id."""
        self.require_representation("dense")
        for seg in self.segments:
            found = seg.record(item_id)
            if found is not None:
                it, rows = found
                if it.get("row") is not None:
                    return np.asarray(seg.images[it["row"]], dtype=np.float32), "image"
                return np.asarray(seg.texts[rows[0]], dtype=np.float32), "text"
        return None

    def check_encoder(self, fingerprint: str, spec: str) -> None:
        """Refuse to mix vectors of different models (see ``check_encoder``)."""
        check_encoder(display_path(self.root), self.manifest, fingerprint, spec)

    def search(self, queries: Embeddings, *, k: int = 10, target: Target = Target.IMAGES,
               ann: AnnQuery | None = None) -> list[list[Hit]]:
        """Top-k hits per query row. ``queries`` is (n, dim) float32, L2-normalised."""
        return [[self.hit(c, target) for c in row] for row in self.dense_candidates(queries, k=k, target=target, ann=ann)]

    def dense_candidates(self, queries: Embeddings, *, k: int, target: Target,
                         ann: AnnQuery | None = None) -> list[list[Candidate]]:
        """Top-k (score, segment, row) per query row, best first, scores exact.

        Segments with an ANN structure for ``target`` find their candidates through it (settings
        from ``ann``, else the tuned ones) and score them exactly from their vectors; the others
        are scanned exactly. ``ann.exact`` scans everything.
        """
        q = self.dense_queries(queries, k)
        cand_scores: list[np.ndarray] = []
        cand_refs: list[tuple[int, np.ndarray]] = []
        for si, seg in enumerate(self.segments):
            mat, live, _ = seg.side(target)
            if len(mat) == 0 or not live.any():
                continue
            index = seg.ann(target)
            if index is not None and not (ann is not None and ann.exact):
                ids = index.candidates(q, index.depth(k, ann), live=seg.live_bits(target), value=index.knob_value(ann))
                scores, top = rescore_candidates(ids, q, mat, k)  # exact scores from the vectors
                cand_scores.append(scores)
                cand_refs.append((si, top))
                continue
            scores = q @ np.asarray(mat).T
            scores[:, ~live] = -np.inf
            top = top_k_indices(scores, min(k, int(live.sum())))
            cand_scores.append(np.take_along_axis(scores, top, axis=1))
            cand_refs.append((si, top))
        results: list[list[Candidate]] = []
        for qi in range(len(q)):
            merged = [(float(s), si, int(row)) for (si, rows), sc in zip(cand_refs, cand_scores, strict=True)
                      for s, row in zip(sc[qi], rows[qi], strict=True) if row >= 0]
            results.append(sorted(merged, key=_order)[:k])
        return results

    def sparse_terms(self, target: Target) -> np.ndarray | None:
        """Bool mask of the vocabulary terms with postings on one side, over every segment (None
        without sparse vectors): the only terms a query can match. Per snapshot (segments never change)."""
        if target not in self._sparse_terms:
            masks = [sp.terms_in_use() for seg in self.segments if (sp := seg.side(target)[2]) is not None]
            self._sparse_terms[target] = np.logical_or.reduce(masks) if masks else None
        return self._sparse_terms[target]

    def sparse_candidates(self, queries: Any, *, k: int, target: Target,
                          max_postings: int | None = None) -> list[list[Candidate]]:
        """Top-k (score, segment, row) per row of a sparse query matrix; only documents sharing a
        term with the query are returned. ``max_postings``: approximate search budget per segment."""
        check_k(k)
        self.require_representation("sparse")
        per_seg = []
        for si, seg in enumerate(self.segments):
            _, live, sparse = seg.side(target)
            if sparse is None or not live.any():
                continue
            ids, scores = sparse.search(queries, k, live=live, max_postings=max_postings)
            per_seg.append((si, ids, scores))
        if not per_seg:
            return [[] for _ in range(queries.shape[0])]
        ids = np.concatenate([i for _, i, _ in per_seg], axis=1)
        scores = np.concatenate([sc for _, _, sc in per_seg], axis=1)
        segs = np.concatenate([np.full(i.shape, si) for si, i, _ in per_seg], axis=1)
        results: list[list[Candidate]] = []
        for qi in range(queries.shape[0]):
            found = ids[qi] >= 0
            i, sc, sg = ids[qi][found], scores[qi][found], segs[qi][found]
            top = np.lexsort((i, sg, -sc))[:k]  # score, then segment/row order, as _order
            results.append(list(zip(sc[top].tolist(), sg[top].tolist(), i[top].tolist(), strict=True)))
        return results

    def dense_rows(self, candidates: list[Candidate], target: Target) -> np.ndarray:
        """The dense vectors of some candidates (for re-scoring sparse results), read from the memory map."""
        self.require_representation("dense")
        if not candidates:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(candidates), self.dim), dtype=np.float32)
        seg_ids = np.array([si for _, si, _ in candidates])
        rows = np.array([row for _, _, row in candidates])
        for si in np.unique(seg_ids):  # one fancy-index read per segment, not one per row
            sel = np.flatnonzero(seg_ids == si)
            out[sel] = self.segments[int(si)].side(target)[0][rows[sel]]
        return out

    def term_weights(self, candidates: list[Candidate], terms: np.ndarray, target: Target) -> list[np.ndarray]:
        """Per candidate, the stored sparse weight of each query term (for ``explain``). Each term's
        postings are read once per segment, for all the candidates in it."""
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(candidates)
        seg_ids = np.array([si for _, si, _ in candidates], dtype=np.int64)
        for si in np.unique(seg_ids):
            sparse = self.segments[int(si)].side(target)[2]
            assert sparse is not None
            pos = np.flatnonzero(seg_ids == si)
            weights = sparse.term_weights(terms, np.array([candidates[p][2] for p in pos]))
            for j, p in enumerate(pos):
                out[int(p)] = weights[:, j]
        return out

    def hit(self, candidate: Candidate, target: Target) -> Hit:
        score, si, row = candidate
        seg = self.segments[si]
        if target is Target.IMAGES:
            it = seg.image_items[row]
            return Hit(id=it["id"], score=score, kind="image", item_id=it["id"], path=it["image"],
                       caption=seg.first_caption.get(it["id"]), meta=it.get("meta", {}))
        t = seg.text_rows[row]
        return Hit(id=t["id"], score=score, kind="text", item_id=t["item"], text=t["text"],
                   meta=seg.meta_by_id.get(t["item"], {}))

    def live_records(self) -> Iterator[tuple[int, dict[str, Any], list[int]]]:
        """(segment position, item record, its caption rows) of every live item, in index order:
        what exports walk."""
        for si, seg in enumerate(self.segments):
            for it in seg.items:
                found = seg.record(it["id"])
                if found is not None:
                    yield si, found[0], found[1]

    def items(self) -> Iterable[dict[str, Any]]:
        """Live item records."""
        for seg in self.segments:
            yield from (it for it in seg.items if it["id"] not in seg.deleted)

    def nbytes(self) -> int:
        """Bytes the index occupies on disk."""
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())


def check_encoder(where: str, manifest: dict[str, Any], fingerprint: str, spec: str) -> None:
    """Refuse to mix vectors of different models.

    Raises:
        IncompatibleIndexError: naming the model the index (folder or export) was built with.
    """
    built = manifest["encoder"]
    if built["fingerprint"] != fingerprint:
        raise IncompatibleIndexError(
            f"{where} was built with model '{built['spec']}' (fingerprint {built['fingerprint']}), not "
            f"'{spec}' ({fingerprint}); search it with --model {built['spec']}, or rebuild it with itr index ... --rebuild"
        )


def require_representation(where: str, representations: list[str], representation: str) -> None:
    """Raises InputError (naming the --repr to rebuild with) when an index lacks ``representation``."""
    if representation not in representations:
        have = "both" if len(representations) == 2 else representations[0]
        other = "sparse" if representation == "dense" else "dense"
        raise InputError(f"{where} was built with --repr {have} (no {representation} vectors); "
                         f"search it with --mode {other}, or rebuild it with itr index ... --repr both --rebuild")


def _order(c: Candidate) -> tuple[float, int, int]:
    """Score, then segment/row order: deterministic."""
    return (-c[0], c[1], c[2])


def read_tombstones(root: Path, manifest: dict[str, Any]) -> dict[str, list[str]]:
    name = manifest.get("tombstones")
    if not name:
        return {}
    with open(root / name, encoding="ascii") as fh:
        data: dict[str, list[str]] = json.load(fh)
    return data


class StoredSparseRows:
    """The stored (dequantised) sparse rows of an index. Exports visit items in segment order and
    ask, item by item, for an image row and then its caption rows: both sides of the current
    segment stay decoded, so each is decoded once (not once per item)."""

    def __init__(self, idx: DenseIndex) -> None:
        self.idx = idx
        self._segment: int | None = None
        self._sides: dict[Target, Any] = {}

    def row(self, si: int, target: Target, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(term ids, weights) of row ``r`` of segment ``si``'s images or captions."""
        if self._segment != si:
            self._segment, self._sides = si, {}
        if target not in self._sides:
            sparse = self.idx.segments[si].side(target)[2]
            assert sparse is not None
            self._sides[target] = sparse.dequantised()
        m = self._sides[target]
        lo, hi = m.indptr[r], m.indptr[r + 1]
        return m.indices[lo:hi], m.data[lo:hi]
