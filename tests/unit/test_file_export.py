"""Exports other tools read, read back by those tools' own readers, and indexed again from vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import color_index

from itr.backends.file_export import export_clip_retrieval, read_embeddings
from itr.errors import InputError, UnknownNameError
from itr.export import export_index
from itr.index import DenseIndex
from itr.index.precomputed import build_from_embeddings
from itr.search import Searcher
from itr.testing import ColorEncoder


@pytest.fixture
def index(tmp_path: Path) -> Path:
    return color_index(tmp_path, n=10)


def test_clip_retrieval_layout_reads_with_embedding_reader(index: Path, tmp_path: Path) -> None:
    import embedding_reader  # autofaiss's reader (make installs it)

    report = export_clip_retrieval(index, tmp_path / "cr")
    assert report.images == 10 and report.texts == 10 and not report.left_out
    idx = DenseIndex.open(index)
    reader = embedding_reader.EmbeddingReader(str(tmp_path / "cr" / "img_emb"), file_format="parquet_npy",
                                              metadata_folder=str(tmp_path / "cr" / "metadata"),
                                              meta_columns=["image_path", "caption", "id"])
    assert reader.count == 10 and reader.dimension == idx.dim
    for emb, meta in reader(batch_size=100, start=0, end=reader.count, show_progress=False):
        for vec, (_, row) in zip(emb, meta.iterrows(), strict=True):
            stored = idx.item_vector(row["id"])
            assert stored is not None and np.allclose(vec, stored[0], atol=1e-3)  # float16, as clip-retrieval writes
            assert row["image_path"].endswith(".png") and row["caption"].startswith("a ")
    text = np.load(tmp_path / "cr" / "text_emb" / "text_emb_0.npy")
    assert text.dtype == np.float16 and text.shape == (10, idx.dim)
    with pytest.raises(InputError, match="exists; pass --replace"):
        export_clip_retrieval(index, tmp_path / "cr")
    export_clip_retrieval(index, tmp_path / "cr", replace=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(InputError, match="not an ITR export"):
        export_clip_retrieval(index, tmp_path / "other", replace=True)


def test_parquet_export_reads_with_pyarrow(index: Path, tmp_path: Path) -> None:
    report = export_index(index, f"parquet:{tmp_path / 'all.parquet'}")
    table = pq.read_table(tmp_path / "all.parquet")
    assert report.images == 10 and report.texts == 10 and table.num_rows == 20
    rows = table.to_pylist()
    assert {r["kind"] for r in rows} == {"image", "text"}
    first = next(r for r in rows if r["kind"] == "image")
    assert json.loads(first["meta"])["color"] in ("red", "green", "blue", "yellow")
    stored = DenseIndex.open(index).item_vector(first["id"])
    assert stored is not None and np.allclose(first["vector"], stored[0], atol=1e-6)
    assert all(t["weight"] > 0 for r in rows for t in r["sparse_terms"])  # the color index keeps sparse vectors
    meta = json.loads(table.schema.metadata[b"itr.encoder"])
    assert meta["encoder"]["spec"] == "test:color" and meta["dim"] == ColorEncoder().dim
    with pytest.raises(UnknownNameError, match="valid destinations are milvus:"):
        export_index(index, "qdrant:x")


@pytest.mark.parametrize("layout", ["clip-retrieval", "parquet"])
def test_index_from_embeddings_round_trip(layout: str, index: Path, tmp_path: Path) -> None:
    target = tmp_path / ("cr" if layout == "clip-retrieval" else "all.parquet")
    export_index(index, f"{layout}:{target}")
    enc = ColorEncoder()
    src = read_embeddings(target)
    assert src.encoder is not None and src.encoder["fingerprint"] == enc.fingerprint
    report = build_from_embeddings(src.items, enc.describe(), src.dim, tmp_path / "again", source=src.path)
    assert report.added == 10 and not report.failed
    hits = Searcher(enc, DenseIndex.open(tmp_path / "again")).search_text("a green square", k=3)
    original = Searcher(enc, DenseIndex.open(index)).search_text("a green square", k=3)
    assert [h.id for h in hits] == [h.id for h in original]
    again = build_from_embeddings(read_embeddings(target).items, enc.describe(), src.dim, tmp_path / "again")
    assert again.unchanged == 10 and again.added == 0  # a re-run writes nothing new


def test_from_embeddings_refuses_what_does_not_fit(index: Path, tmp_path: Path) -> None:
    export_index(index, f"clip-retrieval:{tmp_path / 'cr'}")
    enc = ColorEncoder()
    src = read_embeddings(tmp_path / "cr")
    with pytest.raises(InputError, match="dimensions"):
        build_from_embeddings(src.items, {**enc.describe(), "dim": src.dim + 1}, src.dim, tmp_path / "x")
    bad = np.load(tmp_path / "cr" / "img_emb" / "img_emb_0.npy")
    bad[3] = np.nan
    np.save(tmp_path / "cr" / "img_emb" / "img_emb_0.npy", bad)
    report = build_from_embeddings(read_embeddings(tmp_path / "cr").items, enc.describe(), src.dim, tmp_path / "y")
    assert report.added == 9 and len(report.failed) == 1 and "not finite" in report.failed[0]
    with pytest.raises(InputError, match="clip-retrieval folder"):
        read_embeddings(tmp_path / "nothing.npy")


def test_exports_decode_each_sparse_side_once(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from itr.sparse.index import SparseIndex

    calls = []
    original = SparseIndex.dequantised
    monkeypatch.setattr(SparseIndex, "dequantised", lambda self: calls.append(1) or original(self))
    export_index(index, f"parquet:{tmp_path / 'all.parquet'}")
    segments = len(DenseIndex.open(index).segments)
    assert len(calls) <= 2 * segments  # images and captions of each segment, not once per item


def test_from_embeddings_keeps_one_source_per_index(index: Path, tmp_path: Path) -> None:
    export_index(index, f"clip-retrieval:{tmp_path / 'a'}")
    export_index(index, f"parquet:{tmp_path / 'b.parquet'}")
    enc = ColorEncoder()
    a = read_embeddings(tmp_path / "a")
    build_from_embeddings(a.items, enc.describe(), a.dim, tmp_path / "idx", source=a.path)
    b = read_embeddings(tmp_path / "b.parquet")
    with pytest.raises(InputError, match="--replace-source"):
        build_from_embeddings(b.items, enc.describe(), b.dim, tmp_path / "idx", source=b.path)
