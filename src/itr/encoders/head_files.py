"""Trained heads on disk, shared by projector heads and lexicon heads: float16 safetensors weights
plus a versioned JSON config, both written atomically, read back with one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .._utils import atomic_write_bytes, require
from ..errors import IncompatibleModelError, InputError

C = TypeVar("C")


@dataclass(frozen=True)
class HeadFiles:
    """How one kind of head is stored: its two file names, its format and version, the config key
    that holds its settings, and what to call it in messages."""

    weights_file: str
    config_file: str
    fmt: str
    version: int
    key: str
    what: str

    def is_folder(self, folder: Path) -> bool:
        return (folder / self.config_file).is_file()

    def save(self, folder: Path, module: Any, config: dict[str, Any], trained_with: dict[str, Any] | None) -> None:
        """Floating-point tensors as float16 (others, such as term ids, as they are), then the config."""
        st = require("safetensors.torch", "builtin", f"saving {self.what}")
        import torch

        state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
                 for k, v in module.state_dict().items()}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / self.weights_file, st.save(state))
        meta = {"format": self.fmt, "format_version": self.version, self.key: config, "trained_with": trained_with or {}}
        atomic_write_bytes(folder / self.config_file, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())

    def read_config(self, folder: Path, cls: Callable[..., C],
                    adapt: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> C:
        """The settings section as ``cls`` (``adapt`` fixes JSON types first), after checking the
        format and version."""
        path = folder / self.config_file
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read {self.what} config ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != self.fmt:
            raise IncompatibleModelError(f"{path}: not an ITR {self.what} (format {meta.get('format')!r})"
                                         if isinstance(meta, dict) else f"{path}: not an ITR {self.what}")
        if meta.get("format_version") != self.version:
            raise IncompatibleModelError(f"{path}: {self.what} format version {meta.get('format_version')} is not "
                                         f"supported (this ITR reads {self.version}); retrain or upgrade ITR")
        settings = dict(meta[self.key])
        try:
            return cls(**(adapt(settings) if adapt else settings))
        except TypeError as exc:
            raise IncompatibleModelError(f"{path}: unexpected {self.what} settings ({exc})") from None

    def load_state(self, folder: Path) -> dict[str, Any]:
        st = require("safetensors.torch", "builtin", f"loading {self.what}")
        path = folder / self.weights_file
        if not path.is_file():
            raise InputError(f"{folder}: missing {self.weights_file}")
        return dict(st.load_file(str(path)))

    def fill(self, module: Any, state: dict[str, Any], folder: Path) -> Any:
        """Load ``state`` (floats as float32) into ``module``; returns it in eval mode."""
        try:
            module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except RuntimeError as exc:
            raise IncompatibleModelError(f"{folder / self.weights_file}: weights do not match {self.config_file} "
                                         f"({str(exc).splitlines()[0]})") from None
        return module.eval()
