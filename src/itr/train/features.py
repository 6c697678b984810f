"""Frozen-encoder features, computed once and cached: the projector trains on these in seconds.

Images: EfficientNet-Lite's pooled 1280-d features and 1000 ImageNet logits, side by side (2280
float32 per image), keyed by the image backbone alone. Texts: the text model's embeddings (MiniLM
or USE-m). Each cache file is keyed by the frozen model's identity and by the exact inputs (paths
with size and mtime, or the texts), so a changed image or caption is never served stale features.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, atomic_save_npy, cache_dir
from ..encoders.builtin import BuiltinConseEncoder
from ..encoders.pipeline import encode_image_files
from ..errors import InputError

IMAGE_FEATURE_DIM = 1280 + 1000


def _cache_path(kind: str, key: str) -> Path:
    return cache_dir() / "features" / f"{kind}-{key}.npy"


def _load(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.shape == shape else None


def _save(path: Path, arr: np.ndarray) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only costs recomputation
        atomic_save_npy(path, arr)


class _FeatureEncoder:
    """Adapter so the threaded image pipeline returns features instead of embeddings."""

    def __init__(self, base: BuiltinConseEncoder) -> None:
        self.base = base
        self.dim = IMAGE_FEATURE_DIM
        self.draft_size = base.draft_size
        self.preprocess_image = base.preprocess_image

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(pixels), self.base.image_batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.base.image_batch_size]))
            pooled, logits = self.base.image_features(chunk)
            out.append(torch.cat([pooled, logits], dim=1).float().numpy())
        return np.concatenate(out)


def image_features(base: BuiltinConseEncoder, paths: Sequence[str], *, progress: ProgressFn | None = None,
                   what: str = "training images") -> np.ndarray:
    """(n, 2280) pooled features + logits for image files; unreadable files are an error."""
    h = hashlib.sha256(f"{base.image_feature_key}|image-features-v3".encode())
    for p in paths:
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode("utf-8", "surrogateescape"))
    path = _cache_path("img", h.hexdigest()[:24])
    cached = _load(path, (len(paths), IMAGE_FEATURE_DIM))
    if cached is not None:
        if progress:
            progress(len(paths), len(paths))
        return cached
    chunks: list[np.ndarray] = []
    errors: list[str] = []
    done = 0
    for batch in encode_image_files(_FeatureEncoder(base), paths):  # type: ignore[arg-type]
        chunks.append(batch.embeddings)
        errors.extend(reason for _, reason in batch.errors)
        done += len(batch.indices) + len(batch.errors)
        if progress:
            progress(done, len(paths))
    if errors:
        raise InputError(f"{len(errors)} of {len(paths)} {what} could not be read (first: {errors[0]}); "
                         "fix or remove them from the training data")
    out = np.concatenate(chunks) if chunks else np.zeros((0, IMAGE_FEATURE_DIM), dtype=np.float32)
    _save(path, out)
    return out


def text_features(base: BuiltinConseEncoder, texts: Sequence[str]) -> np.ndarray:
    """(n, d) normalised embeddings of the base's text model (no text head)."""
    h = hashlib.sha256(f"{base.feature_key}|text-features-v2".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = _cache_path("txt", h.hexdigest()[:24])
    cached = _load(path, (len(texts), base.dim))
    if cached is not None:
        return cached
    out = base.encode_texts_raw(list(texts))
    _save(path, out)
    return out


def split_image_features(features: Any) -> tuple[Any, Any]:
    """``(pooled, logits)`` views of an (n, 2280) feature tensor or array."""
    return features[:, :1280], features[:, 1280:]
