"""hf:ORG/NAME downloads on first use from a hub endpoint (a fake one on loopback), then reads the cache."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub, SilentServer
from helpers import run_cli

from itr.encoders import load_encoder
from itr.encoders.hub import files_to_fetch, list_cached_models
from itr.errors import InputError

pytestmark = pytest.mark.hf


@pytest.fixture
def hub_repo(tiny_clip: Path, tmp_path: Path) -> Path:
    """The tiny CLIP as a hub repository holds it: the same weights in formats ITR must not fetch too."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_clip, repo)
    (repo / "tf_model.h5").write_bytes(b"tf weights")
    (repo / "pytorch_model.bin").write_bytes(b"a second copy")
    (repo / "onnx").mkdir()
    (repo / "onnx" / "model.onnx").write_bytes(b"onnx")
    return repo


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # recorded, so teardown undoes what itr --offline sets
    monkeypatch.setenv("ITR_HUB_TIMEOUT", "1")
    return cache


def test_files_to_fetch_keeps_one_weight_format() -> None:
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
             "onnx/model.onnx", "vocab.txt", "README.md", "training_args.bin"]
    assert files_to_fetch(files) == ["config.json", "model.safetensors", "vocab.txt"]
    assert files_to_fetch(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]


def test_download_on_first_use_then_cache_only(hub_repo: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({"tiny/clip": hub_repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        enc = load_encoder("hf:tiny/clip")
        assert enc.dim == 24 and enc.encode_texts(["a dog"]).shape == (1, 24)
        fetched = {p.rsplit("/", 1)[-1] for m, p in hub.requests if m == "GET" and "/resolve/" in p}
        assert "model.safetensors" in fetched and "config.json" in fetched
        assert not fetched & {"tf_model.h5", "pytorch_model.bin", "model.onnx"}
        calls = len(hub.requests)
        again = load_encoder("hf:tiny/clip")  # cached: no network at all
        assert len(hub.requests) == calls and again.fingerprint == enc.fingerprint
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline reads the cache
    assert load_encoder("hf:tiny/clip").fingerprint == enc.fingerprint
    [cached] = list_cached_models()
    assert (cached.repo, cached.kind, cached.spec) == ("tiny/clip", "dual encoder", "hf:tiny/clip")


def test_unknown_repository_is_one_line(hub_repo: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({"tiny/clip": hub_repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(InputError, match="no repository nobody/none on http://127.0.0.1"):
            load_encoder("hf:nobody/none")


def test_unreachable_hub_fails_in_seconds(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SilentServer() as silent:  # accepts connections, never answers
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        start = time.monotonic()
        with pytest.raises(InputError, match="cannot be reached.*--offline"):
            load_encoder("hf:tiny/clip")
        assert time.monotonic() - start < 8  # ITR_HUB_TIMEOUT=1, plus the hub client's own retries


def test_cli_offline_flag_and_models_cached(hub_repo: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch,
                                            color_folder: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("--offline", "index", color_folder, "-o", tmp_path / "idx", "-m", "hf:tiny/clip", "-q")
    assert code == 2 and "--offline" in err and "Traceback" not in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the flag sets it for the process; in-process runs share it
    with FakeHub({"tiny/clip": hub_repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, _, err = run_cli("index", color_folder, "-o", tmp_path / "idx", "-m", "hf:tiny/clip", "-q")
        assert code == 0, err
    code, out, err = run_cli("--offline", "search", tmp_path / "idx", "red", "-k", "1")
    assert code == 0, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    code, out, _ = run_cli("models", "--cached")
    assert code == 0 and "hf:tiny/clip" in out and "dual encoder" in out
