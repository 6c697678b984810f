"""Encoder registry: scheme-prefixed strings -> factories.

    builtin              the offline default: frozen backbones + trained projection heads (builtin:proj)
    builtin:conse        the training-free classifier bridge, by name
    hf:ORG/NAME          a CLIP-family checkpoint by Hugging Face hub id (from the local HF cache)
    local:PATH           a CLIP-family checkpoint saved with save_pretrained in a local folder, or a
                         projector folder written by ``itr train projector``

Plugins add schemes through the ``itr.encoders`` entry-point group: the entry point's name is the
scheme and it loads a callable ``factory(spec: str) -> Encoder``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from ..errors import InputError, UnknownNameError
from .base import Encoder

Factory = Callable[[str], Encoder]


def _builtin(spec: str) -> Encoder:
    from .builtin import load_builtin

    return load_builtin(spec)


def _hf(spec: str) -> Encoder:
    from .hf import load_hf

    return load_hf(spec)


def _local(spec: str) -> Encoder:
    from pathlib import Path

    from .projector import is_projector_folder

    folder = Path(spec.partition(":")[2]).expanduser()
    if folder.is_dir() and is_projector_folder(folder):
        from .builtin import load_projector_encoder

        return load_projector_encoder(spec, folder.resolve())
    return _hf(spec)


SCHEMES: dict[str, tuple[Factory, str]] = {
    "builtin": (_builtin, "offline default model (builtin, builtin:proj, builtin:conse)"),
    "hf": (_hf, "CLIP-family checkpoint by hub id, from the local Hugging Face cache (hf:ORG/NAME)"),
    "local": (_local, "CLIP-family checkpoint or trained projector in a local folder (local:PATH)"),
}


def _plugin_schemes() -> dict[str, Factory]:
    return {ep.name: ep.load() for ep in entry_points(group="itr.encoders")}


def list_encoders() -> list[str]:
    """Names and forms this registry accepts, for help texts and error messages."""
    from .builtin import BUILTIN_VARIANTS

    names = ["builtin"] + [f"builtin:{v}" for v in BUILTIN_VARIANTS] + ["hf:ORG/NAME", "local:PATH"]
    return names + [f"{s}:..." for s in _plugin_schemes()]


def check_encoder_spec(spec: str) -> None:
    """Refuse a model name that cannot load, without loading it (unknown scheme or built-in variant,
    missing local folder): commands that run several models check them all before any work.

    Raises:
        UnknownNameError / InputError: as ``load_encoder`` would.
    """
    spec = spec.strip()
    scheme, _, rest = spec.partition(":")
    if scheme == "builtin":
        from .builtin import builtin_variant

        builtin_variant(spec)
    elif scheme == "local":
        from .hf import local_model_folder

        local_model_folder(rest)
    elif scheme == "hf":
        if "/" not in rest.partition("@")[0]:
            raise InputError(f"model '{spec}' needs a hub id: hf:ORG/NAME")
    elif scheme not in _plugin_schemes():
        raise UnknownNameError(f"unknown model '{spec}'; valid models: {', '.join(list_encoders())}")


def load_encoder(spec: str) -> Encoder:
    """Load an encoder from its registry string.

    Raises:
        UnknownNameError: unknown scheme or builtin variant (the message lists the valid names).
        MissingExtraError: the scheme needs an extra that is not installed.
        InputError: the checkpoint cannot be found or loaded.
    """
    spec = spec.strip()
    scheme = spec.split(":", 1)[0]
    if scheme in SCHEMES:
        return SCHEMES[scheme][0](spec)
    plugins = _plugin_schemes()
    if scheme in plugins:
        return plugins[scheme](spec)
    raise UnknownNameError(f"unknown model '{spec}'; valid models: {', '.join(list_encoders())}")
