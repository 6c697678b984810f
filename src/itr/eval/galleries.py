"""Index kinds that ``itr eval --index`` can compare: the exact reference and FAISS indexes.

A *gallery* is one side (images or texts) put into an index kind; evaluation measures its top-k
results against the exact ranking, its single-query latency and its size. Names:

- ``exact`` — brute-force inner product over float32 (ranks everything; the reference);
- ``auto``, ``hnsw``, ``ivf-flat``, ``ivf-sq8``, ``ivf-pq``, ``opq-ivf-pq``, ``sq8``, ``sq-fp16`` —
  the approximate kinds of ``itr index --index`` (``itr.index.ann``), built and tuned the same way
  (recall@10 target 0.95 against exact), with exact re-scoring;
- ``faiss:FACTORY[@PARAMS]`` — any FAISS ``index_factory`` string with inner-product metric, e.g.
  ``faiss:HNSW32``, ``faiss:IVF256,Flat@nprobe=16``, ``faiss:SQ8``; ``PARAMS`` go to FAISS's
  ``ParameterSpace`` (``efSearch=64``, ``nprobe=32``). Needs the ``ann`` extra.
- ``sparse[@max_postings=N]`` — the lexicon encoder's terms in ITR's inverted index (exact, or
  approximate with a postings budget). Needs a sparse encoder (the ``sparse`` extra).
- ``hybrid[:rescore|rrf|weighted][@candidates=N]`` — sparse and dense fused as ``itr search --mode
  hybrid`` does (default rescore: the sparse top ``candidates`` re-scored with their dense vectors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .._utils import require
from ..errors import InputError, UnknownNameError
from ..index.ann import NAMED_KINDS
from ..index.store import top_k_indices


class Gallery(Protocol):
    """Top-k search over one side of a dataset, and the bytes it takes."""

    exact: bool
    """True when search ranks every item exactly (then full ranks are computed directly)."""

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(n, dim) queries -> (n, k) row indices, best first; -1 pads missing results."""
        ...

    def nbytes(self) -> int: ...


class ExactGallery:
    """Brute-force inner product over float32 vectors: the reference every other kind is held to."""

    exact = True

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return top_k_indices(np.atleast_2d(queries) @ self.vectors.T, min(k, len(self.vectors)))

    def nbytes(self) -> int:
        return int(self.vectors.nbytes)


class FaissGallery:
    """A FAISS index built from a factory string (inner product), trained on the vectors themselves."""

    exact = False

    def __init__(self, vectors: np.ndarray, factory: str, params: str = "") -> None:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(vectors)
            index.add(vectors)
            if params:
                faiss.ParameterSpace().set_index_parameters(index, params)
        except RuntimeError as exc:  # FAISS reports bad factory strings and too-small training sets so
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise InputError(f"FAISS index '{factory}' could not be built over {n} vectors of dim {dim}: {first}") from None
        self.index = index
        self.n = n

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        scores, ids = self.index.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), min(k, self.n))
        ids = np.asarray(ids, dtype=np.int64)
        # FAISS leaves equal scores in heap order; every ITR back end puts the lower id first
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=1)
        return np.take_along_axis(ids, order, axis=1)

    def nbytes(self) -> int:
        return int(_faiss().serialize_index(self.index).nbytes)


class AnnGallery:
    """An approximate kind as ``itr index --index KIND`` builds it (tuned for ``recall`` against
    exact on a sample of the vectors themselves), searched with exact re-scoring."""

    exact = False

    def __init__(self, vectors: np.ndarray, kind: str, recall: float = 0.95) -> None:
        from ..index.ann import AnnPolicy, build_tuned

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ann = build_tuned(self.vectors, kind, None, AnnPolicy(kind=kind, recall=recall, min_rows=1))

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        from ..index.ann import rescore_candidates

        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self.vectors))
        return rescore_candidates(self.ann.candidates(q, self.ann.depth(k)), q, self.vectors, k)[1]

    def nbytes(self) -> int:
        return int(_faiss().serialize_index(self.ann.index).nbytes)


class SparseGallery:
    """One side's sparse vectors (from its dense embeddings) in an inverted index."""

    exact = False

    def __init__(self, vectors: np.ndarray, modality: str, sparse: Any, max_postings: int | None = None) -> None:
        from ..sparse.index import SparseIndex

        self.sparse = sparse
        self.query_modality = "text" if modality == "image" else "image"
        self.index = SparseIndex.build(sparse.encode(vectors, modality, max_terms=sparse.doc_terms), sparse.vocab_size,
                                       scale=sparse.scale)
        self.max_postings = max_postings
        self.terms = self.index.terms_in_use()

    def candidates(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.sparse.encode(np.atleast_2d(queries), self.query_modality, max_terms=self.sparse.query_terms,
                               allowed=self.terms)
        return self.index.search(q, k, max_postings=self.max_postings)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.candidates(queries, k)[0]

    def nbytes(self) -> int:
        return self.index.nbytes()


class HybridGallery:
    """Sparse and exact dense together, fused like ``itr search --mode hybrid``."""

    exact = False

    def __init__(self, vectors: np.ndarray, modality: str, sparse: Any, fusion: str = "rescore",
                 candidates: int = 200) -> None:
        self.sparse = SparseGallery(vectors, modality, sparse)
        self.dense = ExactGallery(vectors)
        self.fusion = fusion
        self.depth = candidates

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        from ..fusion import Fusion, fuse, rescore

        queries = np.atleast_2d(queries)
        depth = max(k, self.depth)
        ids, scores = self.sparse.candidates(queries, depth)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for i, q in enumerate(queries):
            found = ids[i][ids[i] >= 0]
            if len(found) == 0:  # no shared term: dense only, as search does
                top = self.dense.search(q, k)[0]
                out[i, : len(top)] = top
                continue
            if self.fusion == "rescore":
                fused = found[rescore(self.dense.vectors[found], q, found)[0]]
            else:
                d_ids = self.dense.search(q, depth)[0]
                dense_c = [(float(self.dense.vectors[j] @ q), 0, int(j)) for j in d_ids]
                sparse_c = [(float(s), 0, int(j)) for j, s in zip(found, scores[i], strict=False)]
                fused = np.array([row for _, _, row in fuse(dense_c, sparse_c, Fusion(self.fusion))], dtype=np.int64)
            out[i, : min(k, len(fused))] = fused[:k]
        return out

    def nbytes(self) -> int:
        return self.sparse.nbytes() + self.dense.nbytes()


def _faiss() -> Any:
    return require("faiss", "ann", "FAISS index kinds (--index faiss:...)")


GALLERY_KINDS: dict[str, Callable[[np.ndarray], Gallery]] = {"exact": ExactGallery}
"""Named index kinds. Kinds with parameters use a scheme (``faiss:``); sparse kinds register here too."""

ANN_KINDS = tuple(k for k in NAMED_KINDS if k != "exact")  # as itr index --index names them
KIND_FORMS = ("exact", *ANN_KINDS, "faiss:FACTORY[@PARAMS]", "sparse[@max_postings=N]", "hybrid[:rescore|rrf|weighted][@candidates=N]")
FUSIONS = ("rescore", "rrf", "weighted")


def needs_sparse(kind: str) -> bool:
    return kind.split("@", 1)[0].split(":", 1)[0] in ("sparse", "hybrid")


def _sparse_kind(kind: str) -> tuple[str, str, int | None]:
    """``sparse@max_postings=N`` / ``hybrid:FUSION@candidates=N`` -> (scheme, fusion, number)."""
    head, _, param = kind.partition("@")
    scheme, _, fusion = head.partition(":")
    key = "max_postings" if scheme == "sparse" else "candidates"
    if (scheme == "sparse" and fusion) or (scheme == "hybrid" and fusion and fusion not in FUSIONS):
        raise UnknownNameError(f"unknown index kind '{kind}'; valid: {', '.join(KIND_FORMS)}")
    number = None
    if param:
        name, _, value = param.partition("=")
        if name.strip() != key or not value.strip().isdigit():
            raise InputError(f"index kind '{kind}': parameter must be {key}=N (a positive integer)")
        number = int(value)
    return scheme, fusion or "rescore", number


def check_index_kind(kind: str) -> None:
    """Fail fast (before minutes of encoding) on a kind name that cannot work."""
    if kind in GALLERY_KINDS:
        return
    if kind in ANN_KINDS:
        _faiss()
        return
    scheme, _, rest = kind.partition(":")
    if scheme == "faiss" and rest.split("@", 1)[0].strip():
        _faiss()
        return
    if needs_sparse(kind):
        _sparse_kind(kind)
        require("scipy.sparse", "sparse", "sparse index kinds")
        return
    raise UnknownNameError(f"unknown index kind '{kind}'; valid: {', '.join(KIND_FORMS)}"
                           + (f" (named: {', '.join(GALLERY_KINDS)})" if len(GALLERY_KINDS) > 1 else ""))


def make_gallery(kind: str, vectors: np.ndarray, *, modality: str = "image", sparse: Any = None) -> Gallery:
    """The gallery of one side (``modality`` of ``vectors``); sparse kinds need the sparse encoder."""
    check_index_kind(kind)
    if kind in GALLERY_KINDS:
        return GALLERY_KINDS[kind](vectors)
    if kind in ANN_KINDS:
        return AnnGallery(vectors, kind)
    if needs_sparse(kind):
        if sparse is None:
            raise InputError(f"index kind '{kind}' needs a sparse encoder (a lexicon head for this model)")
        scheme, fusion, number = _sparse_kind(kind)
        if scheme == "sparse":
            return SparseGallery(vectors, modality, sparse, number)
        return HybridGallery(vectors, modality, sparse, fusion, number or 200)
    factory, _, params = kind.partition(":")[2].partition("@")
    return FaissGallery(vectors, factory.strip(), params.strip())
