"""Searching an index with an encoder: text -> images/texts, image -> images/texts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .encoders.base import Encoder
from .encoders.registry import load_encoder
from .errors import InputError
from .images import DEFAULT_MAX_PIXELS, load_image
from .index.store import DenseIndex
from .types import Hit, Target

MAX_QUERY_CHARS = 4096
"""Queries are cut to this many characters before tokenising; the model then truncates to its own
context length (77 tokens for CLIP, 256 for the built-in MiniLM). Longer text never helps and a
multi-megabyte query would only cost tokeniser time."""

MAX_K = 10_000


class Searcher:
    """Searches one index with the encoder it was built with.

    Args:
        encoder: must have the fingerprint recorded in the index (checked here).
        index: an opened DenseIndex.
    """

    def __init__(self, encoder: Encoder, index: DenseIndex) -> None:
        index.check_encoder(encoder.fingerprint, encoder.spec)
        self.encoder = encoder
        self.index = index

    def search_text(self, query: str, *, k: int = 10, target: Target = Target.IMAGES) -> list[Hit]:
        """Hits for one text query, best first."""
        return self.search_texts([query], k=k, target=target)[0]

    def search_texts(self, queries: Sequence[str], *, k: int = 10, target: Target = Target.IMAGES) -> list[list[Hit]]:
        """Batch text search: one list of hits per query."""
        cleaned = []
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InputError("query is empty: give some text, or search by image with --image PATH")
            cleaned.append(q.strip()[:MAX_QUERY_CHARS])
        _check_k(k)
        return self.index.search(self.encoder.encode_texts(cleaned), k=k, target=target)

    def search_image(self, image: Image.Image | str | os.PathLike[str], *, k: int = 10,
                     target: Target = Target.IMAGES, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Hit]:
        """Hits for one query image (a PIL image or a file path), best first."""
        _check_k(k)
        if not isinstance(image, Image.Image):
            if not Path(image).is_file():
                raise InputError(f"{image}: no such image file")
            image = load_image(image, draft_size=self.encoder.draft_size, max_pixels=max_pixels)
        return self.search_vectors(self.encoder.encode_images([image]), k=k, target=target)[0]

    def search_vectors(self, vectors: np.ndarray, *, k: int = 10, target: Target = Target.IMAGES) -> list[list[Hit]]:
        _check_k(k)
        return self.index.search(vectors, k=k, target=target)


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K} (got {k})")


def open_searcher(index: str | os.PathLike[str], model: str | None = None) -> Searcher:
    """Open an index and load the encoder it was built with (or ``model``, which must match)."""
    idx = DenseIndex.open(index)
    spec = model or idx.encoder_info["spec"]
    return Searcher(load_encoder(spec), idx)
