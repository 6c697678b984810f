"""Near-duplicate images between training data and every evaluation set, by perceptual hash.

The same clip art, emoji artwork and Wikimedia photo reappear across Debian and npm packages, often
re-encoded or resized; byte hashes miss those. A training image is dropped before training, and
the run reports how many per source, when for some evaluation image both

- their 64-bit pHashes (``imagehash.phash``: DCT of a 32 x 32 greyscale thumbnail) lie within
  ``max_distance`` bits, and
- their 4 x 4 colour thumbnails differ by at most ``MAX_COLOUR_DIFFERENCE`` per channel on average.

The colour check is there because pHash sees only grey: on Open Clip Art, flags of different
countries and one arrow in four colours come within 2-8 bits of each other. ``imagehash`` is the
well-kept library for the hash; only the all-pairs comparison is done here (vectorised popcount,
``np.bitwise_count``).

Images are flattened onto white first (as the encoders see them), so a transparent cut-out and the
same picture on white hash alike. Hashes are cached per file (path, size, mtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .._utils import ProgressFn, atomic_save_npy, cache_dir, require
from ..errors import BadImageError
from ..images import load_image

DEFAULT_MAX_DISTANCE = 6
"""Bits (of 64) within which two pHashes may be the same picture (a rescaled JPEG of a drawing moves
2-4 bits in the tests)."""
MAX_COLOUR_DIFFERENCE = 16.0
"""Mean absolute difference (0-255) of the 4 x 4 RGB thumbnails above which two pictures differ."""

_UNREADABLE = np.uint64(0)  # an image that cannot be read matches nothing (the hash of a flat image
# is 0 too, and a flat image is no evidence of a duplicate either): see near_duplicates
_COLUMNS = 7  # per image: the pHash, then the 48 bytes of the colour thumbnail as six uint64


def _cache_key(paths: Sequence[str]) -> str:
    h = hashlib.sha256(b"phash-v1\n")
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{p}|missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def perceptual_hashes(paths: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
    """(n, 7) uint64 signatures: column 0 the pHash of each image file (0 for one that cannot be
    read), then its 4 x 4 RGB thumbnail's bytes. Cached on disk."""
    imagehash = require("imagehash", "builtin", "de-duplicating training images")
    cache = cache_dir() / "features" / f"phash-v2-{_cache_key(paths)}.npy"
    with contextlib.suppress(OSError, ValueError):
        cached = np.load(cache, allow_pickle=False)
        if cached.shape == (len(paths), _COLUMNS) and cached.dtype == np.uint64:
            return cached
    out = np.zeros((len(paths), _COLUMNS), dtype=np.uint64)
    for i, path in enumerate(paths):
        try:
            img = load_image(path, draft_size=(64, 64))
        except BadImageError:  # one unreadable file costs one hash; the loaders report it themselves
            continue
        bits = imagehash.phash(img).hash.flatten()
        out[i, 0] = np.uint64(int.from_bytes(np.packbits(bits).tobytes(), "big"))
        colour = np.asarray(img.resize((4, 4), Image.Resampling.BOX), dtype=np.uint8).reshape(48)
        out[i, 1:] = colour.view(np.uint64)
        if progress and (i + 1) % 500 == 0:
            progress(i + 1, len(paths))
    with contextlib.suppress(OSError):
        atomic_save_npy(Path(cache), out)
    return out


def _colours(signatures: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(signatures[:, 1:]).view(np.uint8).reshape(len(signatures), 48).astype(np.int16)


def near_duplicates(train: np.ndarray, evaluation: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE,
                    max_colour_difference: float = MAX_COLOUR_DIFFERENCE) -> np.ndarray:
    """Boolean mask over ``train`` signatures (``perceptual_hashes``): the same picture as some
    ``evaluation`` one (see the module docstring). Unreadable images on either side never match."""
    mask = np.zeros(len(train), dtype=bool)
    ev = evaluation[evaluation[:, 0] != _UNREADABLE]
    if not len(ev) or not len(train):
        return mask
    ev_colours = _colours(ev)
    for start in range(0, len(train), 256):  # (256, n_eval) comparisons at a time: bounded memory
        chunk = train[start : start + 256]
        close = np.bitwise_count(chunk[:, None, 0] ^ ev[None, :, 0]) <= max_distance
        rows, cols = np.nonzero(close)
        colour = np.abs(_colours(chunk)[rows] - ev_colours[cols]).mean(axis=1) <= max_colour_difference
        hit = np.zeros(len(chunk), dtype=bool)
        hit[rows[colour]] = True
        mask[start : start + len(chunk)] = hit & (chunk[:, 0] != _UNREADABLE)
    return mask
