"""Helpers for tests of ITR and of its plugins: a tiny deterministic encoder and image factories.

``ColorEncoder`` is a real Encoder with checkable semantics and no weights: an image maps to its
mean colour, a text to the colour words it contains, so "red" finds red images. Tests of indexing
and search logic use it to run in milliseconds; the real encoders have their own tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._utils import l2_normalize
from .encoders.base import encode_images_via_pixels
from .types import Embeddings

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
    "yellow": (230, 230, 20), "black": (5, 5, 5), "white": (250, 250, 250),
}


class ColorEncoder:
    """Encoder protocol implementation: dims 0-2 hold colour, dims 3.. a hash of other words."""

    spec = "test:color"
    dim = 16
    draft_size = (32, 32)

    def __init__(self, salt: str = "") -> None:
        self.salt = salt
        self.fingerprint = "color-" + hashlib.sha1(salt.encode()).hexdigest()[:8]
        self.images_encoded = 0

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint, "dim": self.dim, "preprocessing": {}}

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize((32, 32)), dtype=np.float32).transpose(2, 0, 1) / 255.0

    def encode_pixels(self, pixels: np.ndarray) -> Embeddings:
        self.images_encoded += len(pixels)
        out = np.zeros((len(pixels), self.dim), dtype=np.float32)
        mean = pixels.mean(axis=(2, 3))  # (N, 3) mean RGB
        out[:, :3] = mean - mean.mean(axis=1, keepdims=True) + 0.05
        out[:, 3] = 0.05
        return l2_normalize(out)

    def encode_images(self, images: Sequence[Image.Image]) -> Embeddings:
        return encode_images_via_pixels(self, images)

    def encode_texts(self, texts: Sequence[str]) -> Embeddings:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                if word in COLORS:
                    rgb = np.array(COLORS[word], dtype=np.float32) / 255.0
                    out[i, :3] += rgb - rgb.mean() + 0.05
                else:
                    h = int(hashlib.sha1((self.salt + word).encode()).hexdigest()[:8], 16)
                    out[i, 4 + h % (self.dim - 4)] += 1.0
            out[i, 3] += 0.05
        return l2_normalize(out)


def solid_image(path: str | Path, color: str | tuple[int, int, int], size: tuple[int, int] = (48, 40),
                fmt: str | None = None) -> Path:
    """Write a one-colour image (format from the suffix unless ``fmt``) and return its path."""
    rgb = COLORS[color] if isinstance(color, str) else color
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(p, format=fmt)
    return p


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.standard_normal((n, dim)).astype(np.float32))


class DimensionSparseEncoder:
    """SparseEncoder protocol implementation over a dense test encoder: term ``d<i>`` weighs
    ``max(0, dense[i])``. Sparse search then ranks like dense search restricted to positive parts,
    which makes the index, hybrid and explanation logic checkable without a trained head."""

    spec = "test:dims"
    doc_terms = 8
    query_terms = 8

    def __init__(self, dim: int, fingerprint: str = "dims-1") -> None:
        self.vocab = [f"d{i}" for i in range(dim)]
        self.fingerprint = fingerprint

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def scale(self) -> float:
        return 1.0 / 64.0

    def encode(self, dense: np.ndarray, modality: str, *, max_terms: int | None = None,
               allowed: np.ndarray | None = None) -> Any:
        from scipy import sparse as sp

        from .sparse.index import prune_rows

        w = np.maximum(np.atleast_2d(dense), 0.0).astype(np.float32)
        m = sp.csr_matrix(w if allowed is None else w * np.asarray(allowed, dtype=np.float32))
        return prune_rows(m, max_terms) if max_terms else m

    def known_terms(self, texts: Sequence[str]) -> np.ndarray:
        """Every word is known here: the vocabulary is the embedding's dimensions, not words."""
        return np.ones(len(texts), dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint, "vocab_size": self.vocab_size,
                "doc_terms": self.doc_terms, "query_terms": self.query_terms, "scale": self.scale}
