from __future__ import annotations

from pathlib import Path

import pytest
from helpers import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("clip", tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("siglip", tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def builtin_encoder():
    from itr.encoders import load_encoder

    return load_encoder("builtin")
