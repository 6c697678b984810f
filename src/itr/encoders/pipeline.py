"""Encoding image files: decode and preprocess in worker threads while the model runs.

Pillow releases the GIL while it decodes and resizes, so a small thread pool keeps the model fed
without the start-up cost and pickling of processes. Bad files never stop the batch: each is
reported back with its position and a one-line reason.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BadImageError
from ..images import DEFAULT_MAX_PIXELS, load_image
from ..types import Embeddings
from .base import Encoder


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Result for a run of consecutive input positions.

    Attributes:
        indices: positions (into the input sequence) that were encoded, in order.
        embeddings: (len(indices), dim) vectors for them.
        errors: (position, reason) for the inputs that could not be read.
    """

    indices: list[int]
    embeddings: Embeddings
    errors: list[tuple[int, str]]


def _prepare(encoder: Encoder, path: str | os.PathLike[str], max_pixels: int, hint: str | None,
             draft: bool, exif_transpose: bool, transform: Callable[[Image.Image, int], Image.Image] | None,
             position: int) -> np.ndarray:
    image = load_image(path, draft_size=encoder.draft_size if draft else None, max_pixels=max_pixels,
                       too_large_hint=hint, exif_transpose=exif_transpose)
    if transform is not None:
        image = transform(image, position)
    return encoder.preprocess_image(image)


def encode_image_files(
    encoder: Encoder,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    too_large_hint: str | None = None,
    draft: bool = True,
    exif_transpose: bool = True,
    transform: Callable[[Image.Image, int], Image.Image] | None = None,
) -> Iterator[EncodedBatch]:
    """Encode image files in order, yielding one EncodedBatch per ``batch_size`` inputs.

    Args:
        encoder: any Encoder.
        paths: image files.
        batch_size: inputs per yielded batch (the encoder splits further for its own model batches).
        workers: decode threads (default: number of CPUs, at most 4).
        max_pixels: decompression-bomb limit passed to load_image.
        too_large_hint: how to raise that limit, for the message of an image above it.
        draft: decode JPEGs at a reduced size still at least the model's input (fast; indexing).
            False decodes every pixel and lets the model's preprocessing resize, as the benchmarks'
            reference loaders do (evaluation).
        exif_transpose: apply the EXIF orientation (see ``load_image``).
        transform: ``(image, position) -> image`` applied after decoding (robustness perturbations).
    """
    workers = workers or min(4, os.cpu_count() or 1)
    lookahead = max(2 * batch_size, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="itr-decode") as pool:
        pending: deque[Future[np.ndarray]] = deque()
        next_submit = 0

        def fill() -> None:
            nonlocal next_submit
            while next_submit < len(paths) and len(pending) < lookahead:
                pending.append(pool.submit(_prepare, encoder, paths[next_submit], max_pixels, too_large_hint,
                                               draft, exif_transpose, transform, next_submit))
                next_submit += 1

        fill()
        position = 0
        while position < len(paths):
            indices: list[int] = []
            arrays: list[np.ndarray] = []
            errors: list[tuple[int, str]] = []
            end = min(position + batch_size, len(paths))
            while position < end:
                future = pending.popleft()
                fill()
                try:
                    arrays.append(future.result())
                    indices.append(position)
                except BadImageError as exc:
                    errors.append((position, str(exc)))
                except Exception as exc:  # noqa: BLE001 - one bad file must never abort the batch
                    errors.append((position, f"{paths[position]}: {type(exc).__name__}: {exc}"))
                position += 1
            if arrays:
                embeddings = encoder.encode_pixels(np.stack(arrays))
            else:
                embeddings = np.zeros((0, encoder.dim), dtype=np.float32)
            yield EncodedBatch(indices, embeddings, errors)
