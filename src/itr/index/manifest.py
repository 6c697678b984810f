"""The index manifest: what an index folder holds, under a format version.

Layout of an index folder (format_version 1)::

    manifest.json                 this file; replaced atomically on every commit
    segments/seg-000001/          one folder per committed batch of items, never modified
        images.npy                (n_images, dim) float32, L2-normalised, rows in items.jsonl order
        texts.npy                 (n_texts, dim) float32
        items.jsonl               {"id", "image", "row", "signature", "meta", "captions"} per item
        texts.jsonl               {"id": "<item id>#<n>", "item", "text"} per caption
    tombstones-000007.json        {segment name: [deleted item ids]} (the file the manifest names)

A commit writes new segment folders and a new tombstone file first, then the manifest; a reader that
opens the manifest sees either the whole commit or none of it, and a crash leaves the last commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._utils import display_path
from ..errors import IncompatibleIndexError, InputError

FORMAT = "itr-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SEGMENTS_DIR = "segments"


def read_manifest(root: Path) -> dict[str, Any]:
    """Read and validate ``root/manifest.json``.

    Raises:
        InputError: no index at ``root``.
        IncompatibleIndexError: another format, or a format version this ITR cannot read.
    """
    path = root / MANIFEST
    if not root.exists():
        raise InputError(f"{display_path(root)}: no such index (build one with: itr index SOURCE --out {display_path(root)})")
    if not path.is_file():
        raise InputError(f"{display_path(root)}: not an ITR index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompatibleIndexError(f"{display_path(path)}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleIndexError(f"{display_path(path)}: not an ITR index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "upgrade ITR to read it" if newer else "rebuild it with: itr index SOURCE --out INDEX --rebuild"
        raise IncompatibleIndexError(
            f"{display_path(root)}: index format version {version}, this ITR reads version {FORMAT_VERSION}; {hint}"
        )
    return manifest


def new_manifest(encoder: dict[str, Any], source: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder,
        "dim": encoder["dim"],
        "source": source,
        "complete": True,
        "generation": 0,
        "next_segment": 1,
        "segments": [],
        "tombstones": None,
        "counts": {"items": 0, "images": 0, "texts": 0},
    }
