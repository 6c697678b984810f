"""Sparse and hybrid search end to end with the real built-in model and its shipped lexicon head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import require_emoji_data, run_cli

pytestmark = pytest.mark.builtin
itr = run_cli


@pytest.fixture(scope="module")
def both_index(emoji_jsonl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "both"
    code, _, stderr = itr("index", emoji_jsonl, "--out", out, "--repr", "both", "-q")
    assert code == 0, stderr
    return out


def _search(index: Path, *args: str) -> dict:
    code, stdout, stderr = itr("search", index, *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def test_sparse_hybrid_and_explain(both_index: Path) -> None:
    code, stdout, _ = itr("info", both_index, "--json")
    info = json.loads(stdout)
    assert info["representations"] == ["dense", "sparse"] and info["sparse_model"] == "builtin"
    sparse = _search(both_index, "a jar", "-k", "5", "--mode", "sparse", "--explain")
    assert sparse["mode"] == "sparse" and "jar" in sparse["query_terms"]
    top = sparse["results"][0]
    assert "jar" in top["caption"] and "jar" in top["terms"]
    assert sum(top["terms"].values()) <= top["score"] + 1e-3  # the listed terms are part of the score
    dense = _search(both_index, "a jar", "-k", "120")
    cosine = {r["id"]: r["score"] for r in dense["results"]}
    hybrid = _search(both_index, "a jar", "-k", "5", "--mode", "hybrid")
    assert hybrid["results"][0]["id"] == dense["results"][0]["id"]
    for r in hybrid["results"]:  # rescore: sparse candidates ranked by their dense (cosine) scores
        assert r["score"] == pytest.approx(cosine[r["id"]], abs=1e-5)
    for fusion in ("rrf", "weighted"):
        fused = _search(both_index, "a jar", "-k", "5", "--mode", "hybrid", "--fusion", fusion)
        assert fused["results"][0]["id"] == dense["results"][0]["id"]
    approx = _search(both_index, "a jar", "-k", "3", "--mode", "sparse", "--max-postings", "50")
    assert len(approx["results"]) <= 3
    texts = _search(both_index, "--image", top["path"], "--target", "texts", "--mode", "hybrid", "-k", "3")
    assert texts["results"][0]["item_id"] == top["item_id"]


def test_query_without_known_terms(both_index: Path) -> None:
    empty = _search(both_index, "zzqxv", "--mode", "sparse")
    assert empty["results"] == [] and "no term" in empty["note"]
    code, _, stderr = itr("search", both_index, "zzqxv", "--mode", "sparse")
    assert code == 0 and "no term in the sparse vocabulary" in stderr
    fallback = _search(both_index, "zzqxv", "--mode", "hybrid", "-k", "3")
    assert fallback["mode"] == "dense" and len(fallback["results"]) == 3 and "fell back" in fallback["note"]


def test_dense_only_index_refuses_sparse_and_sparse_only_refuses_dense(emoji_jsonl: Path, tmp_path: Path) -> None:
    assert itr("index", emoji_jsonl, "--out", tmp_path / "d", "-q")[0] == 0
    code, _, stderr = itr("search", tmp_path / "d", "apple", "--mode", "sparse")
    assert code == 2 and "no sparse vectors" in stderr and "--repr both" in stderr
    assert itr("index", emoji_jsonl, "--out", tmp_path / "s", "--repr", "sparse", "-q")[0] == 0
    code, _, stderr = itr("search", tmp_path / "s", "apple")
    assert code == 2 and "--repr sparse" in stderr and "--mode sparse" in stderr
    assert _search(tmp_path / "s", "apple", "--mode", "sparse")["results"]
    code, _, stderr = itr("index", emoji_jsonl, "--out", tmp_path / "s", "--repr", "both", "-q")
    assert code == 2 and "--rebuild" in stderr
    code, _, stderr = itr("index", emoji_jsonl, "--out", tmp_path / "x", "--repr", "sparse", "--sparse-model", "nope")
    assert code == 2 and "valid: builtin, local:PATH" in stderr


def test_eval_sparse_and_hybrid_kinds(tmp_path: Path) -> None:
    require_emoji_data()
    out = tmp_path / "r.json"
    code, _, stderr = itr("eval", "emoji:en", "--index", "exact", "--index", "sparse", "--index", "hybrid",
                          "--index", "sparse@max_postings=200", "--json", out, "-q")
    assert code == 0, stderr
    exact, sparse, hybrid, approx = json.loads(out.read_text())["runs"]
    assert sparse["sparse_model"] == "builtin" and sparse["index"] == "sparse"
    assert sparse["rsum"] > 150  # the shipped head; the training-free ConSE bridge scores ~84
    assert hybrid["rsum"] >= sparse["rsum"] and hybrid["rsum"] >= 0.95 * exact["rsum"]
    assert approx["rsum"] <= sparse["rsum"] + 1e-9
    assert sparse["index_bytes"] < exact["index_bytes"]
    code, _, stderr = itr("eval", "emoji:en", "--index", "sparse@budget=3")
    assert code == 2 and "max_postings=N" in stderr


def test_train_lexicon_head_and_index_with_it(emoji_jsonl: Path, tmp_path: Path) -> None:
    head = tmp_path / "head"
    code, stdout, stderr = itr("train", "lexicon", "--out", head, "--data", "emoji:en", "--epochs", "2",
                               "--doc-terms", "8", "--query-terms", "4", "-q")
    assert code == 0, stderr
    assert (head / "lexicon.safetensors").is_file() and "sparse RSUM" in stdout
    config = json.loads((head / "lexicon.json").read_text())["lexicon"]
    assert config["doc_terms"] == 8 and config["max_weight"] > 0
    code, _, stderr = itr("index", emoji_jsonl, "--out", tmp_path / "i", "--repr", "both",
                          "--sparse-model", f"local:{head}", "-q")
    assert code == 0, stderr
    res = _search(tmp_path / "i", "a jar", "--mode", "sparse", "--explain")
    assert 0 < len(res["query_terms"]) <= 4  # the head's query pruning
    from itr.index import DenseIndex

    idx = DenseIndex.open(tmp_path / "i")
    assert idx.sparse_info and idx.sparse_info["spec"] == f"local:{head}"
    rows = idx.segments[0].image_sparse.dequantised()
    assert rows.nnz > 0 and (rows.getnnz(axis=1) <= 8).all()  # the head's index-time pruning


def test_export_to_milvus_then_search_and_info_from_it(both_index: Path, tmp_path: Path) -> None:
    """`itr export --to milvus:FILE.db` (real Milvus Lite), then the same searches through the export."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    to = f"milvus:{tmp_path / 'emoji.db'}#emoji"
    code, stdout, stderr = itr("export", both_index, "--to", to, "--milvus-index", "FLAT", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["written"] == report["items"] == 120 and report["skipped"] == []
    code, stdout, _ = itr("info", to, "--json")
    info = json.loads(stdout)
    assert code == 0 and info["format"] == "itr-milvus" and info["counts"]["images"] == 120 and info["complete"]
    for args in (("a jar", "-k", "5"), ("a jar", "-k", "5", "--mode", "sparse", "--explain"),
                 ("a jar", "-k", "5", "--mode", "hybrid"), ("a bicycle", "-k", "3", "--target", "texts")):
        folder, milvus = _search(both_index, *args), _search(to, *args)  # type: ignore[arg-type]
        assert [r["id"] for r in milvus["results"]] == [r["id"] for r in folder["results"]]
        assert [r["score"] for r in milvus["results"]] == pytest.approx([r["score"] for r in folder["results"]], abs=1e-4)
        assert milvus["results"][0].get("terms", {}).keys() == folder["results"][0].get("terms", {}).keys()
    code, stdout, stderr = itr("export", both_index, "--to", to)
    assert code == 0 and "0 written, 120 unchanged" in stderr
    code, _, stderr = itr("export", both_index, "--to", "qdrant:x")
    assert code == 2 and "valid destinations are milvus:" in stderr and "clip-retrieval:DIR" in stderr
    code, _, stderr = itr("search", f"milvus:{tmp_path / 'emoji.db'}#other", "a jar")
    assert code == 2 and "no ITR export named 'other'" in stderr and stderr.count("\n") == 1
