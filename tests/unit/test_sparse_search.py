"""Sparse and hybrid search through index folders: build, modes, fusion, explanations, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy.sparse")

from itr.collection import scan_source  # noqa: E402
from itr.errors import IncompatibleIndexError, InputError  # noqa: E402
from itr.index import BuildOptions, DenseIndex, build_index  # noqa: E402
from itr.search import Fusion, Mode, Searcher, SearchOptions, fuse  # noqa: E402
from itr.testing import ColorEncoder, DimensionSparseEncoder, solid_image  # noqa: E402
from itr.types import Target  # noqa: E402


def _collection(root: Path, n: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        rgb = tuple(int(x) for x in rng.integers(0, 256, 3))
        solid_image(root / f"{i}.png", rgb)  # type: ignore[arg-type]
        word = ["red", "green", "blue", "yellow"][i % 4]
        lines.append(json.dumps({"id": f"i{i}", "image": f"{i}.png", "captions": [f"{word} thing {i}"]}))
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    return root / "items.jsonl"


def _build(src: Path, out: Path, repr_: str = "both", **opts: object):
    enc, sparse = ColorEncoder(), DimensionSparseEncoder(ColorEncoder.dim)
    report = build_index(scan_source(src), enc, out, BuildOptions(representation=repr_, **opts),  # type: ignore[arg-type]
                         sparse=sparse)
    return report, Searcher(enc, DenseIndex.open(out), sparse)


def test_sparse_search_equals_brute_force_over_stored_vectors(tmp_path: Path) -> None:
    src = _collection(tmp_path / "c")
    _, s = _build(src, tmp_path / "idx", checkpoint_every=7)  # several segments
    assert len(s.index.segments) > 1 and s.index.representations == ["dense", "sparse"]
    stored = [seg.image_sparse.dequantised() for seg in s.index.segments]
    ids = [it["id"] for seg in s.index.segments for it in seg.image_items]
    from scipy import sparse as sp

    docs = sp.vstack(stored)
    for query in ("red", "blue thing", "yellow"):
        q = s.sparse.encode(s.encoder.encode_texts([query]), "text", max_terms=s.sparse.query_terms)
        brute = (q @ docs.T).toarray()[0]
        hits = s.search_text(query, k=5, mode="sparse")
        np.testing.assert_allclose([h.score for h in hits], np.sort(brute)[::-1][:5], rtol=1e-5)
        assert all(brute[ids.index(h.id)] == pytest.approx(h.score, rel=1e-5) for h in hits)


def test_query_terms_are_chosen_among_the_indexed_terms(tmp_path: Path) -> None:
    # solid colours: the dimension encoder's images use some dimensions only; a query's terms are
    # picked among those (a term no document has would only waste a query slot)
    _, s = _build(_collection(tmp_path / "c"), tmp_path / "idx")
    indexed = s.index.sparse_terms(Target.IMAGES)
    assert indexed is not None and 0 < indexed.sum() < len(indexed)
    vec = np.ones((1, ColorEncoder.dim), dtype=np.float32)  # a query weighing every dimension
    resp = s.query_vector(vec[0], "text", SearchOptions(k=3, mode=Mode.SPARSE))
    names = {s.sparse.vocab[t] for t in np.flatnonzero(indexed)}
    assert resp.query_terms and {t for t, _ in resp.query_terms} <= names
    assert len(resp.query_terms) == min(s.sparse.query_terms, int(indexed.sum()))


def test_hybrid_rescore_scores_are_dense_and_explain_lists_terms(tmp_path: Path) -> None:
    _, s = _build(_collection(tmp_path / "c"), tmp_path / "idx")
    dense = s.search_text("green", k=5)
    hybrid = s.search_text("green", k=5, mode="hybrid", candidates=100)
    assert [h.id for h in hybrid] == [h.id for h in dense]  # every item is a candidate here
    np.testing.assert_allclose([h.score for h in hybrid], [h.score for h in dense], rtol=1e-6)
    resp = s.query_texts(["green"], SearchOptions(k=3, mode=Mode.SPARSE, explain=True))[0]
    assert resp.mode is Mode.SPARSE and resp.query_terms and resp.query_terms[0][1] >= resp.query_terms[-1][1]
    for h in resp.hits:
        assert h.terms and sum(w for _, w in h.terms) == pytest.approx(h.score, rel=0.05)
        assert set(h.to_dict()["terms"]) == {t for t, _ in h.terms}
    texts = s.search_image(tmp_path / "c" / "3.png", k=2, target=Target.TEXTS, mode="hybrid", fusion=Fusion.RRF)
    assert texts and all(h.kind == "text" for h in texts)


def test_sparse_only_index_is_small_and_refuses_dense(tmp_path: Path) -> None:
    src = _collection(tmp_path / "c")
    _, both = _build(src, tmp_path / "both")
    _, only = _build(src, tmp_path / "sparse", "sparse")
    assert only.index.representations == ["sparse"]
    assert sum(seg.images.nbytes for seg in only.index.segments) == 0
    assert [h.id for h in only.search_text("red", k=5, mode="sparse")] == \
        [h.id for h in both.search_text("red", k=5, mode="sparse")]
    for mode in ("dense", "hybrid"):
        with pytest.raises(InputError, match="--repr sparse"):
            only.search_text("red", mode=mode)


def test_dense_index_refuses_sparse_and_repr_change_needs_rebuild(tmp_path: Path) -> None:
    src = _collection(tmp_path / "c", n=8)
    build_index(scan_source(src), ColorEncoder(), tmp_path / "idx", BuildOptions())
    s = Searcher(ColorEncoder(), DenseIndex.open(tmp_path / "idx"))
    with pytest.raises(InputError, match="no sparse vectors.*--repr both"):
        s.search_text("red", mode="sparse")
    with pytest.raises(IncompatibleIndexError, match="--repr dense.*--rebuild"):
        _build(src, tmp_path / "idx")
    report, s2 = _build(src, tmp_path / "idx", rebuild=True)
    assert report.added == 8 and s2.search_text("red", mode="sparse")


def test_no_known_terms_empty_sparse_result_and_hybrid_falls_back(tmp_path: Path) -> None:
    _, s = _build(_collection(tmp_path / "c", n=8), tmp_path / "idx")
    # the test encoder gives every text a weight on d3; a negative-only query vector has no terms
    empty = s._answer(-np.abs(s.encoder.encode_texts(["red"])), "text", SearchOptions(mode=Mode.SPARSE))[0]
    assert empty.hits == [] and "no term" in (empty.note or "")
    fallback = s._answer(-np.abs(s.encoder.encode_texts(["red"])), "text", SearchOptions(mode=Mode.HYBRID, k=3))[0]
    assert fallback.mode is Mode.DENSE and len(fallback.hits) == 3 and "fell back to dense" in (fallback.note or "")


def test_deletions_and_compaction_keep_sparse_results(tmp_path: Path) -> None:
    src = _collection(tmp_path / "c", n=30)
    _, before = _build(src, tmp_path / "idx", checkpoint_every=4)
    want = [h.id for h in before.search_text("blue", k=30, mode="sparse")]
    lines = src.read_text().splitlines()
    src.write_text("\n".join(lines[10:]) + "\n")  # drop a third: tombstones, then compaction
    report, after = _build(src, tmp_path / "idx", checkpoint_every=4)
    assert report.removed == 10 and len(after.index.segments) == 1  # compacted
    got = [h.id for h in after.search_text("blue", k=30, mode="sparse")]
    assert got == [i for i in want if i not in {f"i{n}" for n in range(10)}]


def test_fusion_rules_on_hand_made_lists() -> None:
    dense = [(0.9, 0, 1), (0.8, 0, 2), (0.1, 0, 3)]
    sparse = [(5.0, 0, 3), (4.0, 0, 1)]
    rrf = fuse(dense, sparse, Fusion.RRF)
    assert [c[2] for c in rrf] == [1, 3, 2]
    assert rrf[0][0] == pytest.approx(1 / 61 + 1 / 62)
    w = fuse(dense, sparse, Fusion.WEIGHTED, alpha=0.5)
    # dense normalised: 1 -> 1.0, 2 -> 0.875, 3 -> 0; sparse: 3 -> 1.0, 1 -> 0; ties: lower row first
    assert [c[2] for c in w] == [1, 3, 2]
    assert dict((c[2], round(c[0], 4)) for c in w) == {1: 0.5, 2: 0.4375, 3: 0.5}


def test_format_version_1_index_still_opens_and_upgrades_on_write(tmp_path: Path) -> None:
    src = _collection(tmp_path / "c", n=6)
    build_index(scan_source(src), ColorEncoder(), tmp_path / "idx", BuildOptions())
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["representations"], manifest["sparse"]
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    idx = DenseIndex.open(tmp_path / "idx")
    assert idx.representations == ["dense"] and Searcher(ColorEncoder(), idx).search_text("red", k=2)
    src.write_text(src.read_text().splitlines()[0] + "\n")
    assert build_index(scan_source(src), ColorEncoder(), tmp_path / "idx", BuildOptions()).removed == 5
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["format_version"] == 2
