"""The index manifest: what an index folder holds, under a format version.

Layout of an index folder (format_version 2; version 1 is read as a dense-only version 2)::

    manifest.json                 this file; replaced atomically on every commit
    segments/seg-000001/          one folder per committed batch of items, never modified
        images.npy                (n_images, dim) float32, L2-normalised, rows in items.jsonl order
                                  (dim 0 when the index keeps no dense vectors: --repr sparse)
        texts.npy                 (n_texts, dim) float32
        images-sparse/, texts-sparse/   inverted indexes of the same rows (--repr sparse|both)
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
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REPRESENTATIONS = ("dense", "sparse", "both")
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
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "upgrade ITR to read it" if newer else "rebuild it with: itr index SOURCE --out INDEX --rebuild"
        raise IncompatibleIndexError(
            f"{display_path(root)}: index format version {version}, this ITR reads version {FORMAT_VERSION}; {hint}"
        )
    manifest.setdefault("representations", ["dense"])
    manifest.setdefault("sparse", None)
    return manifest


def representations(repr_: str) -> list[str]:
    """``--repr`` value -> the stored representations."""
    if repr_ not in REPRESENTATIONS:
        raise InputError(f"--repr must be one of: {', '.join(REPRESENTATIONS)} (got '{repr_}')")
    return ["dense", "sparse"] if repr_ == "both" else [repr_]


def new_manifest(encoder: dict[str, Any], source: str | None, reprs: list[str] | None = None,
                 sparse: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder,
        "representations": list(reprs or ["dense"]),
        "sparse": sparse,
        "dim": encoder["dim"],
        "source": source,
        "complete": True,
        "generation": 0,
        "next_segment": 1,
        "segments": [],
        "tombstones": None,
        "counts": {"items": 0, "images": 0, "texts": 0},
    }
