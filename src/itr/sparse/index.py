"""An inverted index over sparse non-negative term weights (learned-sparse / lexicon retrieval).

Documents are rows of a CSR matrix over a vocabulary (for ITR: MiniLM's 30,522 WordPiece terms).
Weights are quantised to uint8 under one global scale; each term's postings are split into impact
groups whose doc ids are var-byte gap coded (see ``kernels``), so a posting costs ~1-2 bytes against
4 bytes per *dimension* per document for dense float32. Everything is in ``.npy`` files (no pickle)
that ``SparseIndex.open`` memory-maps.

Search is score-at-a-time in a compiled kernel: exhaustive by default (exact over the stored
weights: scores equal ``dequantised_docs @ query``), or anytime-approximate with ``max_postings``,
the recall/speed knob.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import atomic_write_bytes, require, save_npy
from ..errors import IncompatibleIndexError, InputError

SPARSE_FORMAT = "itr-sparse"
SPARSE_VERSION = 2
MANIFEST = "sparse.json"
_FILES = ("term_ptr", "group_impact", "byte_ptr", "data")
DEFAULT_LEVELS = 64


def _scipy_sparse() -> Any:
    return require("scipy.sparse", "sparse", "sparse (lexicon) retrieval")


def _kernels() -> Any:
    from . import kernels

    return kernels


def as_csr(matrix: Any, vocab_size: int) -> Any:
    """Validated float32 CSR with explicit zeros removed.

    Raises:
        InputError: wrong width, negative or non-finite weights.
    """
    sp = _scipy_sparse()
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if m.shape[1] != vocab_size:
        raise InputError(f"sparse vectors have {m.shape[1]} dimensions, the vocabulary has {vocab_size}")
    if m.nnz and (m.data < 0).any():
        raise InputError("sparse weights must be non-negative (lexicon weights are log(1 + ReLU(.)))")
    if m.nnz and not np.isfinite(m.data).all():
        raise InputError("sparse weights contain NaN or infinity")
    m.eliminate_zeros()
    m.sum_duplicates()
    return m


def pack_terms(mask: np.ndarray) -> str:
    """A bool mask over the vocabulary as text (base64 of its bits: ~5 KB for 30k terms), for manifests."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def unpack_terms(text: str, vocab_size: int) -> np.ndarray:
    """The mask ``pack_terms`` wrote."""
    import base64

    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    if len(bits) < vocab_size:
        raise IncompatibleIndexError(f"a stored term mask has {len(bits)} bits, the vocabulary {vocab_size} terms")
    return bits[:vocab_size].astype(bool)


def prune_rows(matrix: Any, max_terms: int) -> Any:
    """Keep each row's ``max_terms`` largest weights (index-time / query-time top-k pruning)."""
    m = matrix.tocsr(copy=True)
    lengths = np.diff(m.indptr)
    for i in np.flatnonzero(lengths > max_terms):
        start, end = m.indptr[i], m.indptr[i + 1]
        row = m.data[start:end]
        row[np.argpartition(row, end - start - max_terms)[: end - start - max_terms]] = 0.0
    m.eliminate_zeros()
    return m


@dataclass
class SparseIndex:
    """Impact-ordered postings: term -> impact groups -> var-byte coded ascending doc ids."""

    vocab_size: int
    n_docs: int
    scale: float
    term_ptr: np.ndarray  # (vocab + 1,) int64: groups of term t are [term_ptr[t], term_ptr[t + 1])
    group_impact: np.ndarray  # (G,) uint8, descending within a term
    byte_ptr: np.ndarray  # (G + 1,) uint32 (int64 past 4 GB): bytes of group g are data[byte_ptr[g]:byte_ptr[g + 1]]
    data: np.ndarray  # (bytes,) uint8 var-byte gaps
    nnz: int = 0
    max_group: int = 0  # postings in the largest group (decode buffer size)
    max_terms: int | None = None
    _scratch: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @classmethod
    def build(cls, matrix: Any, vocab_size: int, *, max_terms: int | None = None, scale: float | None = None,
              levels: int = DEFAULT_LEVELS) -> SparseIndex:
        """Index the rows of ``matrix`` (n_docs, vocab).

        ``levels``: quantisation steps (2..255). Fewer levels mean fewer, longer impact groups: smaller
        gaps, fewer group headers (64 levels: ~1.6 bytes a posting at 1M documents, against ~2.3 at
        255) for a relative weight error of at most 1/(2 * levels) of the largest weight.
        ``scale``: weight per step (default: the largest weight / levels); give one to keep several
        segments comparable (larger weights clip to the top level).
        """
        if not 2 <= levels <= 255:
            raise InputError(f"levels must be between 2 and 255 (got {levels})")
        m = as_csr(matrix, vocab_size)
        if max_terms is not None:
            m = prune_rows(m, max_terms)
        top = float(m.data.max()) if m.nnz else 0.0
        if scale is None:
            scale = top / levels if top > 0 else 1.0
        coo = m.tocoo()
        impact = np.clip(np.rint(coo.data / scale), 1, levels).astype(np.uint8)  # a kept term never rounds to 0
        terms, docs = coo.col.astype(np.int64), coo.row.astype(np.int64)
        order = np.lexsort((docs, -impact.astype(np.int16), terms))
        terms, docs, impact = terms[order], docs[order], impact[order]
        new_group = np.ones(len(terms), dtype=bool)
        if len(terms):
            new_group[1:] = (terms[1:] != terms[:-1]) | (impact[1:] != impact[:-1])
        starts = np.flatnonzero(new_group)
        group_ptr = np.append(starts, len(terms)).astype(np.int64)
        group_terms = terms[starts]
        term_ptr = np.searchsorted(group_terms, np.arange(vocab_size + 1)).astype(np.int64)
        data = np.empty(5 * len(docs), dtype=np.uint8)
        byte_ptr = np.empty(len(starts) + 1, dtype=np.int64)
        used = _kernels().encode_groups(group_ptr, docs, data, byte_ptr)
        if used < 2**32:
            byte_ptr = byte_ptr.astype(np.uint32)
        sizes = np.diff(group_ptr)
        return cls(vocab_size, m.shape[0], float(scale), term_ptr, impact[starts].copy(), byte_ptr,
                   data[:used].copy(), int(len(docs)), int(sizes.max()) if len(sizes) else 0, max_terms)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Arrays first, then the manifest (atomically): a reader never sees a half-written index."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            save_npy(root / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        meta = {"format": SPARSE_FORMAT, "format_version": SPARSE_VERSION, "vocab_size": self.vocab_size,
                "n_docs": self.n_docs, "scale": self.scale, "max_terms": self.max_terms, "nnz": self.nnz,
                "max_group": self.max_group,
                "groups": int(len(self.group_impact)), "bytes": int(len(self.data))}
        atomic_write_bytes(root / MANIFEST, (json.dumps(meta, indent=2) + "\n").encode())

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SparseIndex:
        root = Path(folder)
        try:
            meta = json.loads((root / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{root}: no readable sparse index ({exc})") from None
        if meta.get("format") != SPARSE_FORMAT or meta.get("format_version") != SPARSE_VERSION:
            raise IncompatibleIndexError(f"{root}: sparse index format {meta.get('format')} v{meta.get('format_version')} "
                                         f"is not {SPARSE_FORMAT} v{SPARSE_VERSION}; rebuild it")
        try:
            arrays = {n: np.load(root / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in _FILES}
        except (OSError, ValueError) as exc:
            raise IncompatibleIndexError(f"{root}: unreadable sparse index arrays ({exc}); rebuild it") from None
        if (len(arrays["term_ptr"]) != meta["vocab_size"] + 1 or len(arrays["data"]) != meta["bytes"]
                or len(arrays["group_impact"]) != meta["groups"]):
            raise IncompatibleIndexError(f"{root}: sparse index arrays do not match its manifest; rebuild it")
        return cls(meta["vocab_size"], meta["n_docs"], float(meta["scale"]), *(arrays[n] for n in _FILES),
                   int(meta["nnz"]), int(meta["max_group"]), meta.get("max_terms"))

    def nbytes(self) -> int:
        return int(sum(getattr(self, n).nbytes for n in _FILES))

    def terms_in_use(self) -> np.ndarray:
        """Bool mask over the vocabulary: the terms with at least one posting."""
        return np.diff(np.asarray(self.term_ptr)) > 0

    def dequantised(self) -> Any:
        """The stored document matrix (n_docs, vocab) as float32 CSR: what search scores against."""
        sp = _scipy_sparse()
        n = self.nnz
        terms, docs, impacts = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.uint8)
        _kernels().decode_all(self.term_ptr, self.group_impact, self.byte_ptr, self.data, terms, docs, impacts)
        return sp.csr_matrix((impacts.astype(np.float32) * self.scale, (docs, terms)),
                             shape=(self.n_docs, self.vocab_size))

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-thread accumulator, touched list, decode buffer and score scratch (kept: allocating 4 MB
        per query at 1M documents costs more than the search). The touched list has one spare entry:
        the kernel writes a slot before it knows whether the document is new."""
        s = self._scratch
        if getattr(s, "acc", None) is None:
            s.acc = np.zeros(self.n_docs, dtype=np.float32)
            s.touched = np.empty(self.n_docs + 1, dtype=np.int64)
            s.buf = np.empty(max(1, self.max_group), dtype=np.int64)
            s.vals = np.empty(self.n_docs + 1, dtype=np.float32)
        return s.acc, s.touched, s.buf, s.vals

    def search(self, queries: Any, k: int, *, live: np.ndarray | None = None,
               max_postings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query row of a (n, vocab) sparse matrix: ``(ids, scores)``, -1 / 0 padded.

        Documents sharing no term with the query (score 0) are never returned; ties go to the lower
        id. ``live``: bool mask of documents that may be returned. ``max_postings``: stop after that
        many postings (approximate; None = exact).
        """
        q = as_csr(queries, self.vocab_size)
        if k < 1:
            raise InputError(f"k must be at least 1 (got {k})")
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        vals = np.zeros((q.shape[0], k), dtype=np.float32)
        if not self.n_docs:
            return ids, vals
        alive = np.ones(self.n_docs, dtype=np.bool_) if live is None else np.asarray(live, dtype=np.bool_)
        acc, touched, buf, scratch = self._buffers()
        kern = _kernels()
        budget = -1 if max_postings is None else int(max_postings)
        for i in range(q.shape[0]):
            start, end = q.indptr[i], q.indptr[i + 1]
            kern.search_one(self.term_ptr, self.group_impact, self.byte_ptr, self.data,
                            q.indices[start:end].astype(np.int64), q.data[start:end].astype(np.float32),
                            self.scale, alive, k, budget, acc, touched, buf, scratch, ids[i], vals[i])
        return ids, vals

    def term_weights(self, terms: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """(len(terms), len(docs)) stored weights: which query terms each hit matched, and how much."""
        buf = self._buffers()[2]
        out = np.zeros((len(terms), len(docs)), dtype=np.uint8)
        d = np.asarray(docs, dtype=np.int64)
        for i, t in enumerate(np.asarray(terms, dtype=np.int64)):
            _kernels().term_impacts(self.term_ptr, self.group_impact, self.byte_ptr, self.data, int(t), d, buf, out[i])
        return out.astype(np.float32) * self.scale
