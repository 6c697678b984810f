"""The Encoder contract and the shared implementation of torch-based encoders."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from .._utils import batched, l2_normalize
from ..types import Embeddings


@runtime_checkable
class Encoder(Protocol):
    """A dual encoder: images and texts into one space of L2-normalised float32 vectors.

    ``preprocess_image`` is separate from ``encode_pixels`` so that pipelines can decode and resize
    images in worker threads while the model runs (Pillow releases the GIL while it decodes).
    """

    @property
    def spec(self) -> str:
        """The registry string this encoder was loaded from (e.g. ``builtin``, ``local:/models/clip``)."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identifies weights + preprocessing; indexes refuse vectors from a different fingerprint."""
        ...

    @property
    def draft_size(self) -> tuple[int, int]:
        """Smallest decode size worth reading for this encoder's input (for JPEG draft decoding)."""
        ...

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """RGB image -> model input array (C, H, W) float32. Must be thread-safe."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> Embeddings:
        """Batch of preprocessed images (N, C, H, W) -> (N, dim) normalised embeddings."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> Embeddings: ...

    def encode_texts(self, texts: Sequence[str]) -> Embeddings: ...

    def describe(self) -> dict[str, Any]:
        """What a manifest records about the encoder: spec, fingerprint, dim, preprocessing."""
        ...


class TorchEncoder(ABC):
    """Shared batching and inference plumbing for the torch encoders (builtin, Hugging Face)."""

    image_batch_size: int = 16
    text_batch_size: int = 64

    def __init__(self, spec: str) -> None:
        self._spec = spec

    @property
    def spec(self) -> str:
        return self._spec

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def fingerprint(self) -> str: ...

    @property
    @abstractmethod
    def draft_size(self) -> tuple[int, int]: ...

    @abstractmethod
    def preprocess_image(self, image: Image.Image) -> np.ndarray: ...

    @abstractmethod
    def _embed_pixels(self, pixels: Any) -> Any:
        """torch (N, C, H, W) -> torch (N, D), not yet normalised. Called under inference_mode."""

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> Any:
        """list of texts -> torch (N, D), not yet normalised. Called under inference_mode."""

    @abstractmethod
    def preprocessing(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "preprocessing": self.preprocessing(),
        }

    def encode_pixels(self, pixels: np.ndarray) -> Embeddings:
        import torch

        out = np.empty((len(pixels), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(pixels), self.image_batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.image_batch_size]))
                out[start : start + len(chunk)] = self._embed_pixels(chunk).float().numpy()
        return l2_normalize(out)

    def encode_images(self, images: Sequence[Image.Image]) -> Embeddings:
        return encode_images_via_pixels(self, images)

    def embed_pixels_with_grad(self, pixels: Any) -> Any:
        """torch (N, C, H, W) preprocessed pixels that require grad -> L2-normalised torch (N, D),
        differentiable in the pixels (for white-box attacks such as ``itr eval --perturb pgd``)."""
        import torch

        if not pixels.requires_grad:
            raise ValueError("embed_pixels_with_grad needs pixels that require grad; use encode_pixels otherwise")
        with torch.enable_grad():
            out = self._embed_pixels(pixels).float()
            return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def pixel_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)`` per channel, shape (C,): preprocessed = raw (0-255) * scale + offset.
        Attacks bound their steps in raw pixel units and keep pixels inside the valid range."""
        raise NotImplementedError(f"{self.spec}: its preprocessing does not state a per-channel affine")

    def encode_texts(self, texts: Sequence[str]) -> Embeddings:
        return self._encode_texts_with(self._embed_texts, texts)

    def _encode_texts_with(self, embed: Any, texts: Sequence[str], dim: int | None = None) -> Embeddings:
        """Batch ``texts`` through ``embed`` (list -> torch (n, dim), ``self.dim`` unless given) under
        inference mode; normalise."""
        import torch

        texts = list(texts)
        out = np.empty((len(texts), dim or self.dim), dtype=np.float32)
        with torch.inference_mode():
            start = 0
            for chunk in batched(texts, self.text_batch_size):
                out[start : start + len(chunk)] = embed(list(chunk)).float().numpy()
                start += len(chunk)
        return l2_normalize(out)


def encode_images_via_pixels(encoder: Encoder, images: Sequence[Image.Image]) -> Embeddings:
    """``encode_images`` for any encoder: preprocess each image, stack, ``encode_pixels``."""
    if not images:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return encoder.encode_pixels(np.stack([encoder.preprocess_image(im.convert("RGB")) for im in images]))


def hash_files(paths: Sequence[Path], *, extra: Any = None, sample_bytes: int | None = None) -> str:
    """sha256 over file contents (plus a JSON-able ``extra``), as a 16-hex-digit fingerprint.

    With ``sample_bytes``, files larger than twice that are hashed by size plus their first and last
    ``sample_bytes``: multi-GB checkpoints then fingerprint in milliseconds, and any real change of
    weights (which rewrites the header or the tail) still changes the fingerprint.
    """
    h = hashlib.sha256()
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for path in paths:
        size = os.path.getsize(path)
        h.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as fh:
            if sample_bytes is not None and size > 2 * sample_bytes:
                h.update(fh.read(sample_bytes))
                fh.seek(-sample_bytes, os.SEEK_END)
                h.update(fh.read(sample_bytes))
            else:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic), then crop the centre ``size`` x ``size``.

    The crop is mapped back to source coordinates and only that box is resampled (``resize(box=...)``),
    so work and memory are bounded by the output: resizing the shorter side of a W x 1 image first
    makes it (size*W) x size pixels (a 256-byte 60000 x 1 PNG took 12 GB that way) only to keep a
    size x size square. The box is the one the resize-then-crop would keep, so results are the same.
    """
    return image.resize((size, size), Image.Resampling.BICUBIC, box=center_crop_box(image.size, size),
                        reducing_gap=3.0)


def center_crop_box(source: tuple[int, int], size: int) -> tuple[float, float, float, float]:
    """The source-pixel box that "shorter side to ``size``, then centre crop ``size`` x ``size``" keeps."""
    w, h = source
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    sx, sy = nw / w, nh / h
    left, top = (nw - size) // 2, (nh - size) // 2
    return (left / sx, top / sy, (left + size) / sx, (top + size) / sy)


def center_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centre square of a ``(width, height)`` image, as a crop box: all that a centre crop keeps."""
    w, h = size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return (left, top, left + side, top + side)
