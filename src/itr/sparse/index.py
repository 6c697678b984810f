"""An inverted index over sparse non-negative term weights (learned-sparse / lexicon retrieval).

Documents are rows of a CSR matrix over a vocabulary (for ITR: MiniLM's 30,522 WordPiece terms).
The index stores, per term, the documents that contain it (postings) with their weights quantised to
uint8 under one global scale: 1 byte per posting plus a 4-byte document id, against 4 bytes per
dimension per document for dense float32. Everything is in ``.npy`` files (no pickle) that
``SparseIndex.open`` memory-maps.

Search here is exact term-at-a-time accumulation over the stored (quantised) weights, the reference
that faster approximate kernels are tested against. Scores equal ``dequantised_docs @ query``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import atomic_write_bytes, require, save_npy
from ..errors import IncompatibleIndexError, InputError

SPARSE_FORMAT = "itr-sparse"
SPARSE_VERSION = 1
MANIFEST = "sparse.json"
_FILES = ("indptr", "docs", "weights")


def _scipy_sparse() -> Any:
    return require("scipy.sparse", "sparse", "sparse (lexicon) retrieval")


def _csr(matrix: Any, vocab_size: int) -> Any:
    sp = _scipy_sparse()
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if m.shape[1] != vocab_size:
        raise InputError(f"sparse vectors have {m.shape[1]} dimensions, the vocabulary has {vocab_size}")
    if m.nnz and (m.data < 0).any():
        raise InputError("sparse weights must be non-negative (lexicon weights are log(1 + ReLU(.)))")
    if m.nnz and not np.isfinite(m.data).all():
        raise InputError("sparse weights contain NaN or infinity")
    m.eliminate_zeros()
    return m


def prune_rows(matrix: Any, max_terms: int) -> Any:
    """Keep each row's ``max_terms`` largest weights (index-time top-k pruning)."""
    m = matrix.tocsr(copy=True)
    for i in range(m.shape[0]):
        start, end = m.indptr[i], m.indptr[i + 1]
        if end - start > max_terms:
            row = m.data[start:end]
            drop = np.argpartition(row, end - start - max_terms)[: end - start - max_terms]
            row[drop] = 0.0
    m.eliminate_zeros()
    return m


@dataclass
class SparseIndex:
    """Postings (CSC layout of the document matrix) with uint8 weights and one float scale."""

    vocab_size: int
    n_docs: int
    scale: float
    indptr: np.ndarray  # (vocab_size + 1,) int64: postings of term t are [indptr[t], indptr[t + 1])
    docs: np.ndarray  # (nnz,) int32 document ids, ascending within a term
    weights: np.ndarray  # (nnz,) uint8; weight = value * scale
    max_terms: int | None = None

    @classmethod
    def build(cls, matrix: Any, vocab_size: int, *, max_terms: int | None = None) -> SparseIndex:
        m = _csr(matrix, vocab_size)
        if max_terms is not None:
            m = prune_rows(m, max_terms)
        top = float(m.data.max()) if m.nnz else 0.0
        scale = top / 255.0 if top > 0 else 1.0
        csc = m.tocsc()
        csc.sort_indices()
        q = np.clip(np.rint(csc.data / scale), 0, 255).astype(np.uint8)
        return cls(vocab_size, m.shape[0], scale, csc.indptr.astype(np.int64), csc.indices.astype(np.int32), q,
                   max_terms)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Arrays first, then the manifest (atomically): a reader never sees a half-written index."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            save_npy(root / f"{name}.npy", getattr(self, name))
        meta = {"format": SPARSE_FORMAT, "format_version": SPARSE_VERSION, "vocab_size": self.vocab_size,
                "n_docs": self.n_docs, "scale": self.scale, "max_terms": self.max_terms, "nnz": int(len(self.docs))}
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
        arrays = {n: np.load(root / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in _FILES}
        if len(arrays["docs"]) != meta["nnz"] or len(arrays["indptr"]) != meta["vocab_size"] + 1:
            raise IncompatibleIndexError(f"{root}: sparse index arrays do not match its manifest; rebuild it")
        return cls(meta["vocab_size"], meta["n_docs"], float(meta["scale"]), arrays["indptr"], arrays["docs"],
                   arrays["weights"], meta.get("max_terms"))

    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.docs.nbytes + self.weights.nbytes)

    def dequantised(self) -> Any:
        """The stored document matrix (n_docs, vocab) as float32 CSR: what search scores against."""
        sp = _scipy_sparse()
        return sp.csc_matrix((self.weights.astype(np.float32) * self.scale, self.docs, self.indptr),
                             shape=(self.n_docs, self.vocab_size)).tocsr()

    def scores(self, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Exact scores of every document for one query given as (term ids, weights)."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        for t, w in zip(np.asarray(terms, dtype=np.int64), np.asarray(weights, dtype=np.float32), strict=True):
            if not 0 <= t < self.vocab_size:
                raise InputError(f"query term id {t} is outside the vocabulary (0..{self.vocab_size - 1})")
            start, end = int(self.indptr[t]), int(self.indptr[t + 1])
            if end > start:
                # a term lists each document once, so plain fancy-index += is exact (np.add.at is ~10x slower)
                out[self.docs[start:end]] += (w * self.scale) * self.weights[start:end].astype(np.float32)
        return out

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query row of a (n, vocab) sparse matrix: ``(ids, scores)``, -1 / 0 padded.

        Documents with score 0 (no shared term) are never returned; ties go to the lower id.
        """
        from ..index.store import top_k_indices

        q = _csr(queries, self.vocab_size)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        vals = np.zeros((q.shape[0], k), dtype=np.float32)
        for i in range(q.shape[0]):
            start, end = q.indptr[i], q.indptr[i + 1]
            s = self.scores(q.indices[start:end], q.data[start:end])
            if not self.n_docs:
                continue
            top = top_k_indices(s[None, :], min(k, self.n_docs))[0]
            top = top[s[top] > 0]
            ids[i, : len(top)] = top
            vals[i, : len(top)] = s[top]
        return ids, vals
