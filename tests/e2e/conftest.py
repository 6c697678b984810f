from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_emoji_data


@pytest.fixture(scope="session")
def emoji_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 120 emoji with English names, as `itr make-dataset emoji --limit 120` writes them."""
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    return build_emoji_dataset(tmp_path_factory.mktemp("emoji"), lang="en", limit=120)
