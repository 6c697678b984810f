from __future__ import annotations

import os
from pathlib import Path

import pytest

from itr.testing import ColorEncoder, solid_image


def pytest_configure(config: pytest.Config) -> None:
    # Derived model files (class-prompt embeddings) go to pytest's cache folder: never the user's
    # home, and reused across runs. Set before any fixture loads a model.
    # No test may reach a real host: hub model names resolve against a closed loopback port unless a
    # test starts its own fake hub (tests/fake_hub.py).
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ["ITR_CACHE_DIR"] = str(config.cache.mkdir("itr-cache")) if getattr(config, "cache", None) else "/tmp/itr-test-cache"


@pytest.fixture
def color_encoder() -> ColorEncoder:
    return ColorEncoder()


@pytest.fixture
def color_folder(tmp_path: Path) -> Path:
    """red/green/blue images, one in a subfolder, plus files that must be ignored."""
    root = tmp_path / "photos"
    solid_image(root / "red.png", "red")
    solid_image(root / "green.jpg", "green")
    solid_image(root / "sub" / "blue.webp", "blue")
    (root / "notes.txt").write_text("not an image")
    solid_image(root / ".hidden" / "yellow.png", "yellow")
    return root


@pytest.fixture
def color_jsonl(tmp_path: Path) -> Path:
    root = tmp_path / "coll"
    solid_image(root / "img" / "r.png", "red")
    solid_image(root / "img" / "g.png", "green")
    solid_image(root / "img" / "b.png", "blue")
    lines = [
        '{"image": "img/r.png", "captions": ["a red square", "crimson tile"], "id": "r", "meta": {"n": 1}}',
        '{"image": "img/g.png", "captions": ["a green square"], "id": "g"}',
        '{"image": "img/b.png", "captions": ["a blue square"]}',
    ]
    p = root / "items.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p
