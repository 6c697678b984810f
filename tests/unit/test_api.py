from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import itr
from itr.encoders import list_encoders, load_encoder
from itr.errors import InputError, UnknownNameError


def test_all_is_in_sync() -> None:
    import types

    # Submodules appear as attributes once anything imported them, so which ones depends on the
    # tests that ran before: they are not the public names __all__ lists.
    public = {n for n in dir(itr) if not n.startswith("_") and not isinstance(getattr(itr, n), types.ModuleType)}
    assert public - {"annotations"} == set(itr.__all__) - {"__version__"}


def test_core_import_is_light() -> None:
    # The library must not drag in the CLI, the server or torch at import time.
    code = ("import sys, itr; bad = [m for m in ('torch', 'transformers', 'typer', 'fastapi') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'clip-xl'; valid models: builtin, builtin:proj, builtin:multi, builtin:conse"):
        load_encoder("clip-xl")
    with pytest.raises(UnknownNameError, match="valid: builtin, builtin:proj, builtin:multi, builtin:conse"):
        load_encoder("builtin:nope")
    with pytest.raises(KeyError):  # a failed look-up is also a KeyError
        load_encoder("nope:x")
    assert "hf:ORG/NAME" in list_encoders()


def test_missing_local_model_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model folder not found"):
        load_encoder(f"local:{tmp_path / 'none'}")
    with pytest.raises(InputError, match="cannot load model"):
        load_encoder(f"local:{tmp_path}")


def test_hf_model_not_in_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="not cached and the hub at http://127.0.0.1:9 cannot be reached"):
        load_encoder("hf:openai/clip-vit-base-patch32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not in the local Hugging Face cache.*--offline.*huggingface-cli download"):
        load_encoder("hf:openai/clip-vit-base-patch32")
