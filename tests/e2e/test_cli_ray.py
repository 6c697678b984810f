"""`itr index --engine ray` from the command line, with the real built-in model on a local Ray that
the command starts (and stops) itself: the same index as in-process encoding, a re-run with nothing
to encode, an unreachable cluster refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

pytest.importorskip("ray")

pytestmark = pytest.mark.builtin
itr = run_cli


def _index(*args: object) -> dict:
    code, stdout, stderr = itr("index", *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def _image_vectors(index: object) -> dict[str, np.ndarray]:
    return {it["id"]: np.asarray(seg.images[it["row"]]) for seg in index.segments for it in seg.items
            if it["id"] not in seg.deleted and it.get("row") is not None}


def test_ray_engine_builds_the_in_process_index(emoji_jsonl: Path, tmp_path: Path) -> None:
    import ray

    from itr.index import DenseIndex

    local = _index(emoji_jsonl, "--out", tmp_path / "local", "--repr", "both")
    report = _index(emoji_jsonl, "--out", tmp_path / "ray", "--repr", "both", "--engine", "ray",
                    "--shard-size", "50", "--ray-actors", "2")
    assert not ray.is_initialized(), "the command must stop the Ray it started"
    assert report["counts"] == local["counts"] and report["added"] == local["added"] == 120
    assert report["failed"] == local["failed"]
    va, vb = _image_vectors(DenseIndex.open(tmp_path / "local")), _image_vectors(DenseIndex.open(tmp_path / "ray"))
    assert sorted(va) == sorted(vb) and len(va) == 120
    assert max(float(np.abs(va[k] - vb[k]).max()) for k in va) < 1e-5

    code, stdout, stderr = itr("search", tmp_path / "ray", "a cat", "-k", "3", "--mode", "hybrid", "--json")
    assert code == 0, stderr
    expected = itr("search", tmp_path / "local", "a cat", "-k", "3", "--mode", "hybrid", "--json")[1]
    assert [r["id"] for r in json.loads(stdout)["results"]] == [r["id"] for r in json.loads(expected)["results"]]

    again = _index(emoji_jsonl, "--out", tmp_path / "ray", "--repr", "both", "--engine", "ray")
    assert again["unchanged"] == 120 and again["added"] == again["updated"] == 0


def test_unreachable_cluster_is_one_line(emoji_jsonl: Path, tmp_path: Path) -> None:
    code, _, stderr = itr("index", emoji_jsonl, "--out", tmp_path / "idx", "--engine", "ray",
                          "--ray-address", "127.0.0.1:1", "-q")
    assert code != 0
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert lines[-1].startswith("error: could not reach the Ray cluster at 127.0.0.1:1: "), stderr
    assert "ray start --head" in lines[-1]
    assert not (tmp_path / "idx" / "manifest.json").exists()
    code, _, stderr = itr("index", emoji_jsonl, "--out", tmp_path / "idx", "--engine", "ray",
                          "--ray-address", "headnode", "-q")
    assert code != 0 and "expected HOST:PORT" in stderr
