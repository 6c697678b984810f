"""Index kinds that ``itr eval --index`` can compare: the exact reference and FAISS indexes.

A *gallery* is one side (images or texts) put into an index kind; evaluation measures its top-k
results against the exact ranking, its single-query latency and its size. Names:

- ``exact`` — brute-force inner product over float32 (ranks everything; the reference);
- ``faiss:FACTORY[@PARAMS]`` — any FAISS ``index_factory`` string with inner-product metric, e.g.
  ``faiss:HNSW32``, ``faiss:IVF256,Flat@nprobe=16``, ``faiss:SQ8``; ``PARAMS`` go to FAISS's
  ``ParameterSpace`` (``efSearch=64``, ``nprobe=32``). Needs the ``ann`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .._utils import require
from ..errors import InputError, UnknownNameError
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
        _, ids = self.index.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), min(k, self.n))
        return np.asarray(ids, dtype=np.int64)

    def nbytes(self) -> int:
        return int(_faiss().serialize_index(self.index).nbytes)


def _faiss() -> Any:
    return require("faiss", "ann", "FAISS index kinds (--index faiss:...)")


GALLERY_KINDS: dict[str, Callable[[np.ndarray], Gallery]] = {"exact": ExactGallery}
"""Named index kinds. Kinds with parameters use a scheme (``faiss:``); sparse kinds register here too."""

KIND_FORMS = ("exact", "faiss:FACTORY[@PARAMS]")


def check_index_kind(kind: str) -> None:
    """Fail fast (before minutes of encoding) on a kind name that cannot work."""
    if kind in GALLERY_KINDS:
        return
    scheme, _, rest = kind.partition(":")
    if scheme == "faiss" and rest.split("@", 1)[0].strip():
        _faiss()
        return
    raise UnknownNameError(f"unknown index kind '{kind}'; valid: {', '.join(KIND_FORMS)}"
                           + (f" (named: {', '.join(GALLERY_KINDS)})" if len(GALLERY_KINDS) > 1 else ""))


def make_gallery(kind: str, vectors: np.ndarray) -> Gallery:
    check_index_kind(kind)
    if kind in GALLERY_KINDS:
        return GALLERY_KINDS[kind](vectors)
    factory, _, params = kind.partition(":")[2].partition("@")
    return FaissGallery(vectors, factory.strip(), params.strip())
