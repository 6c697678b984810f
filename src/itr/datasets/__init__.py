"""Offline datasets built from files that Debian packages ship (no downloads at run time)."""

from __future__ import annotations

from .emoji import build_emoji_dataset
from .gcompris import build_gcompris_dataset
from .openclipart import build_openclipart_dataset
from .tuxpaint import build_tuxpaint_dataset

__all__ = ["build_emoji_dataset", "build_gcompris_dataset", "build_openclipart_dataset", "build_tuxpaint_dataset"]
