"""The inverted index against brute-force scoring on random sparse data (the conformance oracle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import random_sparse as _random_sparse

sp = pytest.importorskip("scipy.sparse")

from itr.errors import IncompatibleIndexError, InputError  # noqa: E402
from itr.sparse import SparseIndex, prune_rows  # noqa: E402

VOCAB = 500


def random_sparse(n: int, nnz: int, seed: int) -> Any:
    return _random_sparse(n, nnz, seed, VOCAB)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_equals_brute_force_over_stored_weights(seed: int) -> None:
    docs, queries = random_sparse(300, 40, seed), random_sparse(25, 8, seed + 100)
    index = SparseIndex.build(docs, VOCAB)
    ids, scores = index.search(queries, k=10)
    brute = (queries @ index.dequantised().T).toarray()
    for i in range(queries.shape[0]):
        want = np.lexsort((np.arange(300), -brute[i]))[:10]
        want = want[brute[i, want] > 0]
        got = ids[i][ids[i] >= 0]
        np.testing.assert_allclose(scores[i, : len(got)], brute[i, got], rtol=1e-5)
        np.testing.assert_allclose(np.sort(brute[i, got]), np.sort(brute[i, want]), rtol=1e-5)  # same top-k scores
    # uint8 quantisation stays close to the float weights: the rank of the true best is near the top
    exact = (queries @ docs.T).toarray()
    agree = np.mean([exact[i].argmax() in ids[i][:3] for i in range(queries.shape[0]) if exact[i].max() > 0])
    assert agree > 0.9


@pytest.mark.parametrize("k", [1, 7, 60, 400])
def test_top_k_order_with_ties_and_deletions_is_exact(k: int) -> None:
    # 20 terms, weights 1 or 2, queries of 4 terms weighing 1: most scores tie, across documents first
    # reached through different terms, so the selection's threshold bin holds many documents and
    # only the tie rule (lower id first) decides; k=400 exceeds the matches
    rng = np.random.default_rng(7)
    docs = sp.csr_matrix(rng.integers(1, 3, (600, 20)) * (rng.random((600, 20)) < 0.15), dtype=np.float32)
    queries = sp.csr_matrix((rng.random((30, 20)) < 0.2).astype(np.float32))
    index = SparseIndex.build(docs, 20, levels=2)
    live = np.random.default_rng(3).random(600) > 0.2
    ids, scores = index.search(queries, k=k, live=live)
    brute = (queries @ index.dequantised().T).toarray()
    for i in range(queries.shape[0]):
        ok = np.flatnonzero((brute[i] > 0) & live)
        want = ok[np.lexsort((ok, -brute[i, ok].astype(np.float32)))][:k]
        got = ids[i][ids[i] >= 0]
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(scores[i, : len(got)], brute[i, got], rtol=1e-5)
        assert (ids[i][len(got):] == -1).all() and (scores[i][len(got):] == 0).all()
    # the anytime mode with a budget above every query's postings is the exact search
    np.testing.assert_array_equal(index.search(queries, k=k, live=live, max_postings=10**9)[0], ids)


def test_save_open_memory_mapped_and_sizes(tmp_path: Path) -> None:
    docs = random_sparse(200, 30, 5)
    index = SparseIndex.build(docs, VOCAB, max_terms=16)
    index.save(tmp_path / "sp")
    opened = SparseIndex.open(tmp_path / "sp")
    assert isinstance(opened.data, np.memmap) and opened.max_terms == 16
    assert opened.nbytes() == index.nbytes() < docs.shape[0] * 384 * 4  # far below a 384-d float32 matrix
    q = random_sparse(5, 6, 9)
    np.testing.assert_array_equal(opened.search(q, 5)[0], index.search(q, 5)[0])
    assert (np.diff(index.dequantised().indptr) <= 16).all()  # index-time top-k pruning


def test_prune_rows_keeps_largest() -> None:
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.9], [0.2, 0.0, 0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(prune_rows(m, 2).toarray(), [[0.0, 0.5, 0.0, 0.9], [0.2, 0.0, 0.0, 0.0]])


def test_no_shared_terms_means_no_results_and_bad_input(tmp_path: Path) -> None:
    index = SparseIndex.build(sp.csr_matrix(([1.0], ([0], [3])), shape=(1, VOCAB)), VOCAB)
    ids, _ = index.search(sp.csr_matrix(([1.0], ([0], [4])), shape=(1, VOCAB)), 3)
    assert (ids == -1).all()
    with pytest.raises(InputError, match="non-negative"):
        SparseIndex.build(sp.csr_matrix(([-1.0], ([0], [3])), shape=(1, VOCAB)), VOCAB)
    with pytest.raises(InputError, match="dimensions"):
        SparseIndex.build(sp.csr_matrix((1, 7)), VOCAB)
    index.save(tmp_path / "s")
    (tmp_path / "s" / "sparse.json").write_text('{"format": "itr-sparse", "format_version": 9}')
    with pytest.raises(IncompatibleIndexError, match="rebuild it"):
        SparseIndex.open(tmp_path / "s")
