"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``torch.save`` would pickle the optimizer state, and loading a pickle runs code. A checkpoint folder
someone hands over must be as safe to open as an index, so the optimizer state is flattened into
named tensors plus a JSON skeleton here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .._utils import atomic_write_bytes, require

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"


def _flatten(obj: Any, prefix: str, tensors: dict[str, Any]) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, list | tuple):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    return obj  # int, float, str, bool, None


def _unflatten(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
    return obj


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write a nested state (optimizer/scheduler state dicts, RNG tensors, counters) atomically."""
    st = require("safetensors.torch", "hf", "training checkpoints")
    tensors: dict[str, Any] = {}
    skeleton = _flatten(state, "s", tensors)
    atomic_write_bytes(folder / STATE_TENSORS, st.save(tensors) if tensors else st.save({}))
    atomic_write_bytes(folder / STATE_JSON, (json.dumps(skeleton) + "\n").encode())


def load_state(folder: Path) -> dict[str, Any]:
    st = require("safetensors.torch", "hf", "training checkpoints")
    tensors = st.load_file(str(folder / STATE_TENSORS))
    state: dict[str, Any] = _unflatten(json.loads((folder / STATE_JSON).read_text()), tensors)
    return state


def replace_folder(tmp: Path, final: Path) -> None:
    """Swap a fully written folder into place; a crash leaves either the old or the new one."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def recover_folder(final: Path) -> None:
    """Finish an interrupted ``replace_folder``: if only the ``.old`` copy exists, it becomes ``final``."""
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.exists():
        old.rename(final)
