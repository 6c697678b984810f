"""Approximate dense indexes inside an ITR index: choice, tuning, storage, search, deletions, policy
changes. (The conformance suite checks each kind against exact search with exhaustive settings.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itr.errors import InputError, UnknownNameError
from itr.index import DenseIndex, IndexWriter
from itr.index.ann import AnnPolicy, AnnQuery, choose_kind, factory_for, nlist_for, parse_memory, pq_m
from itr.testing import random_unit_vectors
from itr.types import Target

pytest.importorskip("faiss")
DIM = 32


def clustered(n: int, seed: int, centers: int = 40) -> np.ndarray:
    """Unit vectors around random centres: the structure real embeddings have (uniform random
    vectors have none, and no approximate index beats a scan on them)."""
    rng = np.random.default_rng(seed)
    c = random_unit_vectors(centers, DIM, seed + 1)
    x = c[rng.integers(0, centers, n)] + rng.normal(0, 0.15, (n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_index(root: Path, images: np.ndarray, texts: np.ndarray | None = None) -> Path:
    texts = np.zeros((0, DIM), np.float32) if texts is None else texts
    n = len(images)
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        items = [{"id": f"i{r}", "image": None, "row": r, "signature": "", "meta": {}, "captions": int(r < len(texts))}
                 for r in range(n)]
        rows = [{"id": f"i{r}#0", "item": f"i{r}", "text": f"t{r}"} for r in range(len(texts))]
        w.add_segment(items, images, rows, texts)
        w.commit()
    return root


def exact_top(idx: DenseIndex, q: np.ndarray, k: int) -> list[list[int]]:
    return [[r for _, _, r in row] for row in idx.dense_candidates(q, k=k, target=Target.IMAGES, ann=AnnQuery(exact=True))]


def recall(got: list[list[int]], want: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def test_sizes_and_choice_rules() -> None:
    assert parse_memory("2G") == 2 * 1024**3 and parse_memory("512M") == 512 * 1024**2
    assert parse_memory("1.5GB") == int(1.5 * 1024**3) and parse_memory("300000") == 300000 and parse_memory(None) is None
    with pytest.raises(InputError, match="--max-memory '2 apples'"):
        parse_memory("2 apples")
    assert nlist_for(1_000_000) == 4096 and nlist_for(100) == 2 and nlist_for(10) == 1
    assert pq_m(512, 81) == 64 and pq_m(512, 300) == 256 and pq_m(512, 11) is None
    # autofaiss-style: the most accurate kind within the budget per vector; small segments exact
    million = 10**6
    assert choose_kind(1000, 512, None, exact_below=20_000) == "exact"
    assert choose_kind(million, 512, 4000 * million, exact_below=20_000) == "hnsw"
    assert choose_kind(million, 512, 2048 * million, exact_below=20_000) == "ivf-sq8"
    assert choose_kind(million, 512, 256 * million, exact_below=20_000) == "ivf-pq"
    assert factory_for("ivf-pq", million, 512, 256 * million) == "IVF4096,PQ128"  # 2 GB as 8 + 128 B/vector
    assert factory_for("ivf-pq", million, 512, 2 * 1024**3 // 8) == "IVF4096,PQ128"
    assert factory_for("opq-ivf-pq", million, 512) == "OPQ64,IVF4096,PQ64"
    with pytest.raises(InputError, match="raise --max-memory"):
        choose_kind(million, 512, 8 * million, exact_below=20_000)
    with pytest.raises(UnknownNameError, match="valid kinds: exact, auto, hnsw"):
        AnnPolicy(kind="annoy")
    with pytest.raises(InputError, match="--ann-recall"):
        AnnPolicy(kind="hnsw", recall=1.5)


@pytest.mark.parametrize("kind", ["ivf-flat", "hnsw", "ivf-pq"])
def test_built_tuned_and_searched_through_the_index(kind: str, tmp_path: Path) -> None:
    x = clustered(6000, 0)
    queries = clustered(300, 9)
    root = make_index(tmp_path / "i", x, queries)  # captions tune the image side (cross-modal queries)
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        built = w.build_ann(AnnPolicy(kind=kind, recall=0.9, min_rows=1000))
    assert [b.split(":")[0] for b in built] == ["seg-000001/images"]  # 300 captions < min_rows: exact
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["ann"]["kind"] == kind
    info = manifest["segments"][0]["ann"]["images"]
    assert (root / "segments" / "seg-000001" / info["file"]).is_file() and info["bytes"] > 0
    assert info["recall"] >= 0.9 and info["tuned_on"] == 200 and info["p50_ms"] > 0
    idx = DenseIndex.open(root)
    assert idx.segments[0].image_ann is not None and idx.segments[0].text_ann is None
    q = clustered(50, 5)
    approx = [[r for _, _, r in row] for row in idx.dense_candidates(q, k=10, target=Target.IMAGES)]
    assert recall(approx, exact_top(idx, q, 10)) >= 0.85
    mapped = DenseIndex.open(root, ann_mmap=True)  # memory-mapped: the same answers
    assert [[r for _, _, r in row] for row in mapped.dense_candidates(q, k=10, target=Target.IMAGES)] == approx
    # scores are exact cosine similarities whatever the kind
    hits = idx.search(q[:1], k=5)[0]
    rows = [int(h.id[1:]) for h in hits]
    np.testing.assert_allclose([h.score for h in hits], x[rows] @ q[0], rtol=1e-5)


def test_knob_trades_recall_and_deleted_rows_never_return(tmp_path: Path) -> None:
    x = clustered(8000, 1)
    root = make_index(tmp_path / "i", x)
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        w.build_ann(AnnPolicy(kind="ivf-flat", min_rows=1000))
    idx = DenseIndex.open(root)
    q = clustered(60, 6)
    truth = exact_top(idx, q, 10)
    got = {p: recall([[r for _, _, r in row] for row in
                      idx.dense_candidates(q, k=10, target=Target.IMAGES, ann=AnnQuery(nprobe=p))], truth)
           for p in (1, 4, 128)}
    assert idx.segments[0].image_ann.info["nlist"] == 128  # type: ignore[union-attr]
    assert got[1] < got[4] < got[128] == 1.0  # nprobe = nlist: exhaustive
    dead = {f"i{r}" for r in truth[0][:5]}
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        w.delete("seg-000001", sorted(dead))
        w.commit()
    idx = DenseIndex.open(root, reuse=idx)
    assert idx.segments[0].image_ann is not None  # deletions keep the structure; rows are skipped
    hits = idx.search(q[:1], k=10)[0]
    assert not dead & {h.id for h in hits} and len(hits) == 10


def test_policy_changes_rebuild_or_remove_and_old_files_go(tmp_path: Path) -> None:
    x = clustered(5000, 2)
    root = make_index(tmp_path / "i", x)
    enc = {"spec": "x", "fingerprint": "f", "dim": DIM}
    seg = root / "segments" / "seg-000001"
    with IndexWriter(root, encoder=enc) as w:
        w.build_ann(AnnPolicy(kind="ivf-flat", min_rows=1000))
        generation = w.manifest["generation"]
        assert w.build_ann() == [] and w.manifest["generation"] == generation  # same policy: no work, no commit
        first = sorted(p.name for p in seg.glob("ann-*"))
        w.build_ann(AnnPolicy(kind="hnsw", min_rows=1000))
    second = sorted(p.name for p in seg.glob("ann-*"))
    assert len(first) == len(second) == 1 and first != second  # replaced, old file collected
    info = DenseIndex.open(root).manifest["segments"][0]["ann"]["images"]
    assert info["factory"] == "HNSW32" and info["knob"] == "efSearch"
    with IndexWriter(root, encoder=enc) as w:
        w.build_ann(AnnPolicy(kind="exact"))
    assert not list(seg.glob("ann-*")) and DenseIndex.open(root).manifest["ann"] is None
    assert "ann" not in DenseIndex.open(root).manifest["segments"][0]


def test_auto_fits_the_memory_budget(tmp_path: Path) -> None:
    x = clustered(6000, 3)
    root = make_index(tmp_path / "i", x)
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        w.build_ann(AnnPolicy(kind="auto", max_memory=6000 * 24, min_rows=1000))  # 24 bytes per vector
    info = DenseIndex.open(root).manifest["segments"][0]["ann"]["images"]
    assert info["kind"] == "ivf-pq" and info["factory"] == "IVF128,PQ4"  # what is left after centroids and codebooks
    assert info["bytes"] <= 6000 * 24  # the file (codes, ids, centroids, codebooks) fits the budget


def test_compaction_and_service_adds_keep_ann(tmp_path: Path) -> None:
    """A merged segment is new: the writer's policy gives it its structure again."""
    x = clustered(3000, 4)
    root = make_index(tmp_path / "i", x[:2000])
    enc = {"spec": "x", "fingerprint": "f", "dim": DIM}
    with IndexWriter(root, encoder=enc) as w:
        w.build_ann(AnnPolicy(kind="ivf-flat", min_rows=500))
        items = [{"id": f"j{r}", "image": None, "row": r, "signature": "", "meta": {}, "captions": 0} for r in range(1000)]
        w.add_segment(items, x[2000:], [], np.zeros((0, DIM), np.float32))
        w.commit()
        w.compact()
        w.build_ann()
    m = DenseIndex.open(root).manifest
    assert len(m["segments"]) == 1 and m["segments"][0]["ann"]["images"]["rows"] == 3000
    assert len(list((root / "segments").glob("*/ann-*"))) == 1


def test_a_bad_ann_file_is_a_clear_error(tmp_path: Path) -> None:
    root = make_index(tmp_path / "i", clustered(3000, 5))
    with IndexWriter(root, encoder={"spec": "x", "fingerprint": "f", "dim": DIM}) as w:
        w.build_ann(AnnPolicy(kind="ivf-flat", min_rows=500))
    f = next((root / "segments" / "seg-000001").glob("ann-*"))
    f.write_bytes(b"not faiss")
    with pytest.raises(InputError, match="unreadable ANN index.*itr index ... --index"):
        DenseIndex.open(root)
