"""Conformance suite: every index back end against exact brute-force scoring on random data.

Each back end is a factory ``build(docs, tmp_path) -> search(queries, k) -> (ids, scores)`` over
either dense vectors or sparse term weights. The oracle scores every document by brute force
(over the stored weights for quantised sparse back ends) and the suite checks the same properties
for all: the top-k score multiset, best-first order, ties to the lower id where ids are exposed,
k larger than the collection, no zero-score sparse results, and live masks (deletions).
A new back end joins by adding one entry to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import random_sparse as _random_sparse

sp = pytest.importorskip("scipy.sparse")

from itr.sparse import SparseIndex  # noqa: E402
from itr.testing import random_unit_vectors  # noqa: E402

VOCAB = 300
Search = Callable[..., tuple[np.ndarray, np.ndarray]]


def random_sparse(n: int, nnz: int, seed: int) -> Any:
    return _random_sparse(n, nnz, seed, VOCAB)


# -- back ends --------------------------------------------------------------------------------------
def _sparse_memory(docs: Any, tmp: Path) -> tuple[Search, Any]:
    idx = SparseIndex.build(docs, VOCAB)
    return (lambda q, k, live=None: idx.search(q, k, live=live)), idx.dequantised()


def _sparse_mmap(docs: Any, tmp: Path) -> tuple[Search, Any]:
    SparseIndex.build(docs, VOCAB).save(tmp / "sp")
    idx = SparseIndex.open(tmp / "sp")
    return (lambda q, k, live=None: idx.search(q, k, live=live)), idx.dequantised()


def _sparse_full_budget(docs: Any, tmp: Path) -> tuple[Search, Any]:
    """The anytime (approximate) code path with a budget covering every posting must be exact."""
    idx = SparseIndex.build(docs, VOCAB)
    return (lambda q, k, live=None: idx.search(q, k, live=live, max_postings=idx.nnz)), idx.dequantised()


def _dense_exact(docs: np.ndarray, tmp: Path) -> tuple[Search, Any]:
    from itr.eval.galleries import ExactGallery

    g = ExactGallery(docs)
    return (lambda q, k, live=None: _with_scores(g.search(q, k), q, docs)), docs


def _dense_faiss_flat(docs: np.ndarray, tmp: Path) -> tuple[Search, Any]:
    pytest.importorskip("faiss")
    from itr.eval.galleries import FaissGallery

    g = FaissGallery(docs, "Flat")
    return (lambda q, k, live=None: _with_scores(g.search(q, k), q, docs)), docs


def _dense_ann(kind: str) -> Callable[[np.ndarray, Path], tuple[Search, Any]]:
    """An ITR index folder with an approximate structure of ``kind`` on its one segment, searched
    through DenseIndex with settings that make it exhaustive (every IVF list, a candidate list and
    a re-rank depth as large as the collection): then it must equal exact search, and everything
    around the FAISS call (id mapping, exact re-scoring, deleted rows, tie order) is checked."""

    def factory(docs: np.ndarray, tmp: Path) -> tuple[Search, Any]:
        pytest.importorskip("faiss")
        from itr.index.ann import AnnPolicy, AnnQuery
        from itr.index.store import DenseIndex
        from itr.index.writer import IndexWriter
        from itr.types import Target

        n, dim = docs.shape
        with IndexWriter(tmp / kind, encoder={"spec": "x", "fingerprint": "f", "dim": dim}) as w:
            items = [{"id": str(r), "image": None, "row": r, "signature": "", "meta": {}, "captions": 0} for r in range(n)]
            w.add_segment(items, np.ascontiguousarray(docs, dtype=np.float32), [], np.zeros((0, dim), np.float32))
            w.commit()
            w.build_ann(AnnPolicy(kind=kind, min_rows=1))
        idx = DenseIndex.open(tmp / kind)
        assert (idx.segments[0].image_ann is not None) == (n >= 256 or "pq" not in kind)
        query = AnnQuery(nprobe=4096, ef_search=max(n, 16), rerank=n)

        def search(q: np.ndarray, k: int, live: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            view = idx
            if live is not None:
                seg = idx.segments[0].with_deleted({str(r) for r in np.flatnonzero(~live)})
                view = DenseIndex(idx.root, idx.manifest, [seg])
            ids = np.full((len(q), k), -1, dtype=np.int64)
            scores = np.zeros((len(q), k), dtype=np.float32)
            for i, row in enumerate(view.dense_candidates(q, k=k, target=Target.IMAGES, ann=query)):
                ids[i, : len(row)] = [r for _, _, r in row]
                scores[i, : len(row)] = [s for s, _, _ in row]
            return ids, scores

        return search, docs

    return factory


def _milvus(kind: str) -> Callable[[Any, Path], tuple[Search, Any]]:
    """A Milvus Lite collection (exact FLAT / sparse inverted index) written with the export's schema
    and searched through ``MilvusIndex``'s candidate interface: Milvus's results, key mapping, score
    order and tie order are checked like any other back end's."""

    def factory(docs: Any, tmp: Path) -> tuple[Search, Any]:
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
        from itr.backends.milvus import (
            FORMAT,
            FORMAT_VERSION,
            MilvusAddress,
            MilvusConnection,
            MilvusIndex,
            sparse_dict,
        )
        from itr.backends.milvus_export import _schema
        from itr.types import Target

        n = docs.shape[0]
        dim = 8 if kind == "sparse" else docs.shape[1]
        reprs = [kind]
        conn = MilvusConnection(MilvusAddress.parse(f"milvus:{tmp / 'c.db'}"))
        for target in Target:
            params = conn.client.prepare_index_params()
            params.add_index(kind, index_type="FLAT" if kind == "dense" else "SPARSE_INVERTED_INDEX", metric_type="IP")
            conn.client.create_collection(conn.address.collection(target), schema=_schema(target, dim, reprs),
                                          index_params=params)
        rows = []
        for r in range(n):
            row: dict[str, Any] = {"id": f"{r:06d}", "path": "", "caption": "", "signature": "", "origin": "", "meta": {}}
            if kind == "dense":
                row["dense"] = docs[r].tolist()
            else:
                lo, hi = docs.indptr[r], docs.indptr[r + 1]
                row["sparse"] = sparse_dict(docs.indices[lo:hi], docs.data[lo:hi], VOCAB)
            rows.append(row)
        conn.client.insert(conn.address.collection(Target.IMAGES), rows)
        conn.client.flush(conn.address.collection(Target.IMAGES))
        conn.write_manifest({"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "dim": dim,
                             "encoder": {"spec": "x", "fingerprint": "f", "dim": dim}, "representations": reprs,
                             "counts": {"items": n, "images": n, "texts": 0}})
        conn.close()
        idx = MilvusIndex.open(f"milvus:{tmp / 'c.db'}")

        def search(q: Any, k: int, live: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            found = (idx.dense_candidates(q, k=k, target=Target.IMAGES) if kind == "dense"
                     else idx.sparse_candidates(sp.csr_matrix(q), k=k, target=Target.IMAGES))
            ids = np.full((q.shape[0], k), -1, dtype=np.int64)
            scores = np.zeros((q.shape[0], k), dtype=np.float32)
            for i, row in enumerate(found):
                ids[i, : len(row)] = [int(key) for _, _, key in row]
                scores[i, : len(row)] = [s for s, _, _ in row]
            return ids, scores

        return search, docs

    return factory


def _with_scores(ids: np.ndarray, q: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.where(ids >= 0, np.einsum("qd,qkd->qk", q, docs[np.maximum(ids, 0)]), 0.0)
    return ids, scores.astype(np.float32)


BACKENDS: dict[str, tuple[str, Callable[[Any, Path], tuple[Search, Any]], bool]] = {
    # name: (representation, factory, supports live masks)
    "sparse-memory": ("sparse", _sparse_memory, True),
    "sparse-mmap": ("sparse", _sparse_mmap, True),
    "sparse-anytime-full-budget": ("sparse", _sparse_full_budget, True),
    "dense-exact": ("dense", _dense_exact, False),
    "dense-faiss-flat": ("dense", _dense_faiss_flat, False),
    **{f"dense-ann-{kind}": ("dense", _dense_ann(kind), True)
       for kind in ("hnsw", "ivf-flat", "ivf-sq8", "ivf-pq", "opq-ivf-pq", "sq8", "sq-fp16", "faiss:IVF2,SQ4")},
    # Deletions in Milvus are deletes, not live masks: covered by tests/integration/test_milvus_backend.py.
    "milvus-lite-dense": ("dense", _milvus("dense"), False),
    "milvus-lite-sparse": ("sparse", _milvus("sparse"), False),
}


def _data(kind: str, seed: int) -> tuple[Any, Any]:
    if kind == "sparse":
        return random_sparse(400, 30, seed), random_sparse(30, 8, seed + 100)
    return random_unit_vectors(400, 24, seed), random_unit_vectors(30, 24, seed + 100)


def _oracle(kind: str, stored: Any, q: Any) -> np.ndarray:
    return (q @ stored.T).toarray() if kind == "sparse" else q @ stored.T


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_equals_brute_force(name: str, seed: int, tmp_path: Path) -> None:
    kind, factory, _ = BACKENDS[name]
    docs, queries = _data(kind, seed)
    search, stored = factory(docs, tmp_path)
    brute = _oracle(kind, stored, queries)
    k = 10
    ids, scores = search(queries, k)
    assert ids.shape == (queries.shape[0], k)
    for i in range(queries.shape[0]):
        got = ids[i][ids[i] >= 0]
        want = np.lexsort((np.arange(brute.shape[1]), -brute[i]))[:k]
        if kind == "sparse":
            want = want[brute[i, want] > 0]  # documents sharing no term are never results
        assert len(got) == len(want)
        np.testing.assert_allclose(scores[i, : len(got)], brute[i, got], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.sort(brute[i, got]), np.sort(brute[i, want]), rtol=1e-4, atol=1e-6)
        assert (np.diff(scores[i, : len(got)]) <= 1e-6).all()  # best first
        assert len(set(got.tolist())) == len(got)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_k_larger_than_collection_and_ties(name: str, tmp_path: Path) -> None:
    kind, factory, _ = BACKENDS[name]
    if kind == "sparse":
        docs = sp.csr_matrix(np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
                             @ np.eye(3, VOCAB, dtype=np.float32))
        q = sp.csr_matrix(np.eye(1, VOCAB, 1, dtype=np.float32))
    else:
        base = random_unit_vectors(2, 24, 3)
        docs = np.stack([base[0], base[0], base[1], -base[0]])
        q = base[:1]
    search, _ = factory(docs, tmp_path)
    ids, _ = search(q, 10)
    got = ids[0][ids[0] >= 0].tolist()
    assert got[:2] == [0, 1]  # identical documents: the lower id first
    assert len(got) == (2 if kind == "sparse" else 4)


@pytest.mark.parametrize("name", [n for n, (_, _, live) in BACKENDS.items() if live])
def test_live_mask_excludes_deleted_documents(name: str, tmp_path: Path) -> None:
    kind, factory, _ = BACKENDS[name]
    docs, queries = _data(kind, 7)
    search, stored = factory(docs, tmp_path)
    live = np.ones(docs.shape[0], dtype=bool)
    live[::3] = False
    brute = _oracle(kind, stored, queries)
    brute[:, ~live] = -np.inf
    ids, _ = search(queries, 5, live)
    for i in range(queries.shape[0]):
        got = ids[i][ids[i] >= 0]
        assert live[got].all()
        want = np.lexsort((np.arange(brute.shape[1]), -brute[i]))[:5]
        want = want[brute[i, want] > 0]
        np.testing.assert_allclose(np.sort(brute[i, got]), np.sort(brute[i, want]), rtol=1e-4)


def test_anytime_budget_trades_recall_for_work() -> None:
    """The approximate knob: recall against exact grows with the postings budget and reaches 1."""
    docs, queries = random_sparse(2000, 40, 11), random_sparse(40, 10, 12)
    idx = SparseIndex.build(docs, VOCAB)
    exact, _ = idx.search(queries, 10)
    recalls = []
    for budget in (50, 500, 5000, idx.nnz):
        approx, _ = idx.search(queries, 10, max_postings=budget)
        recalls.append(np.mean([len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum())
                                for a, e in zip(approx, exact, strict=True)]))
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
