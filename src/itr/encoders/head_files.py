"""Trained heads on disk, shared by projector heads and lexicon heads: float16 safetensors weights
plus a versioned JSON config, both written atomically, read back with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._utils import atomic_write_bytes, require
from ..errors import IncompatibleModelError, InputError


def save_head_files(folder: Path, module: Any, *, weights_file: str, config_file: str, fmt: str, version: int,
                    key: str, config: dict[str, Any], trained_with: dict[str, Any] | None, what: str) -> None:
    """Floating-point tensors as float16 (others, such as term ids, as they are), then the config."""
    st = require("safetensors.torch", "builtin", f"saving {what}")
    import torch

    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in module.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / weights_file, st.save(state))
    meta = {"format": fmt, "format_version": version, key: config, "trained_with": trained_with or {}}
    atomic_write_bytes(folder / config_file, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def read_head_config(folder: Path, *, config_file: str, fmt: str, version: int, key: str, what: str) -> dict[str, Any]:
    """The ``key`` section of a head's config, after checking its format and version."""
    path = folder / config_file
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise IncompatibleModelError(f"{path}: not an ITR {what} (format {meta.get('format')!r})"
                                     if isinstance(meta, dict) else f"{path}: not an ITR {what}")
    if meta.get("format_version") != version:
        raise IncompatibleModelError(f"{path}: {what} format version {meta.get('format_version')} is not "
                                     f"supported (this ITR reads {version}); retrain or upgrade ITR")
    return dict(meta[key])


def load_head_state(folder: Path, *, weights_file: str, what: str) -> dict[str, Any]:
    st = require("safetensors.torch", "builtin", f"loading {what}")
    path = folder / weights_file
    if not path.is_file():
        raise InputError(f"{folder}: missing {weights_file}")
    return dict(st.load_file(str(path)))


def fill_head(module: Any, state: dict[str, Any], *, weights: Path, config_file: str) -> Any:
    """Load ``state`` (floats as float32) into ``module``; returns it in eval mode."""
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise IncompatibleModelError(f"{weights}: weights do not match {config_file} "
                                     f"({str(exc).splitlines()[0]})") from None
    return module.eval()
