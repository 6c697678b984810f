"""Cross-encoder re-ranking with a tiny random BLIP ITM, saved with save_pretrained and loaded
through the user's path: the library, `itr search` and `itr eval` (LAVIS's two-matrix protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import color_index, run_cli, save_tiny_blip_itm
from PIL import Image

from itr.errors import InputError, UnknownNameError
from itr.index import DenseIndex
from itr.rerank import load_reranker
from itr.search import Searcher, SearchOptions
from itr.testing import ColorEncoder
from itr.types import Target

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_blip_itm(tmp_path_factory.mktemp("blip") / "blip-itm")


class _Reversed:
    """A re-ranker that prefers what the first stage ranked last (to see the order change)."""

    spec, fingerprint = "test:reversed", "rev"

    def __init__(self) -> None:
        self.calls = 0

    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.arange(len(texts), dtype=np.float32)


def test_blip_itm_scores_pairs(tiny_blip: Path) -> None:
    rr = load_reranker(f"local:{tiny_blip}")
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (20, 50), (10, 10, 200))]
    scores = rr.score_pairs(images, ["a red square", "a blue square"])
    assert scores.shape == (2,) and scores.dtype == np.float32 and ((0 <= scores) & (scores <= 1)).all()
    assert np.array_equal(scores, rr.score_pairs(images, ["a red square", "a blue square"]))  # deterministic
    assert rr.fingerprint == load_reranker(f"local:{tiny_blip}").fingerprint
    with pytest.raises(UnknownNameError, match="valid forms: local:PATH"):
        load_reranker("blip")
    with pytest.raises(InputError, match="model folder not found"):
        load_reranker(f"local:{tiny_blip.parent / 'none'}")


def test_searcher_reranks_the_first_stage(tmp_path: Path) -> None:
    index = color_index(tmp_path, repr_="dense")
    enc = ColorEncoder()
    plain = Searcher(enc, DenseIndex.open(index)).query_texts(["red"], SearchOptions(k=3))[0]
    rr = _Reversed()
    s = Searcher(enc, DenseIndex.open(index), reranker=rr)
    res = s.query_texts(["red"], SearchOptions(k=3, rerank_depth=6))[0]
    deep = Searcher(enc, DenseIndex.open(index)).query_texts(["red"], SearchOptions(k=6))[0]
    assert rr.calls == 6 and [h.id for h in res.hits] == [h.id for h in deep.hits[::-1][:3]]
    assert [h.score for h in res.hits] == [5.0, 4.0, 3.0] and "re-ranked by test:reversed" in (res.note or "")
    assert [h.id for h in plain.hits] != [h.id for h in res.hits]
    with pytest.raises(InputError, match="needs a re-ranker"):
        Searcher(enc, DenseIndex.open(index)).query_texts(["red"], SearchOptions(k=3, rerank_depth=5))
    with pytest.raises(InputError, match="--target images"):
        s.query_texts(["red"], SearchOptions(k=3, rerank_depth=5, target=Target.TEXTS))


def test_cli_search_and_eval_with_a_reranker(tiny_blip: Path, tmp_path: Path) -> None:
    from helpers import color_collection

    src = color_collection(tmp_path / "src", n=8)
    code, _, stderr = run_cli("index", src, "--out", tmp_path / "idx", "--model", "builtin:conse", "-q")
    assert code == 0, stderr
    code, stdout, stderr = run_cli("search", tmp_path / "idx", "a red square", "-k", "3", "--rerank-model",
                                   f"local:{tiny_blip}", "--rerank-depth", "5", "--json")
    assert code == 0, stderr
    out = json.loads(stdout)
    assert len(out["results"]) == 3 and "re-ranked by local:" in out["note"]
    assert all(0 <= r["score"] <= 1 for r in out["results"])  # the matching head's probability
    code, stdout, stderr = run_cli("eval", f"jsonl:{src}", "-m", "builtin:conse", "--rerank-model",
                                   f"local:{tiny_blip}", "--rerank-depth", "4", "--json", "-")
    assert code == 0, stderr
    rr = json.loads(stdout)["reranked"]
    assert rr["protocol"] == "lavis" and rr["depth"] == 4 and rr["ms_per_query"] > 0
    assert 0 <= rr["t2i"]["R@1"] <= rr["t2i"]["R@5"] <= 100
    code, _, stderr = run_cli("eval", f"jsonl:{src}", "--rerank-model", "nope", "-q")
    assert code == 2 and "unknown re-ranker 'nope'" in stderr


def test_http_rerank_on_a_server_with_a_reranker(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from helpers import LOCAL, color_service

    from itr.server import create_app

    index = color_index(tmp_path, repr_="dense")
    rr = _Reversed()
    with_rr = color_service(index, refresh_seconds=0, reranker=rr, rerank_depth=6)
    with TestClient(create_app(with_rr), base_url=LOCAL) as client:
        plain = client.get("/api/search", params={"q": "red", "k": 3}).json()
        res = client.get("/api/search", params={"q": "red", "k": 3, "rerank": "true"}).json()
    with_rr.close()
    assert rr.calls == 6 and "re-ranked by test:reversed" in res["note"] and plain["note"] is None
    assert [r["score"] for r in res["results"]] == [5.0, 4.0, 3.0]
    bare = color_service(index, refresh_seconds=0)
    with TestClient(create_app(bare), base_url=LOCAL) as client:
        res = client.get("/api/search", params={"q": "red", "rerank": "true"})
    bare.close()
    assert res.status_code == 400 and "--rerank-model" in res.json()["detail"]
