"""Thumbnails of indexed images: resized once, cached on disk, keyed by the file's content signature.

A result grid asks for dozens of thumbnails per query; decoding a 12-megapixel JPEG for each would
cost ~100 ms, a cached 256 px JPEG costs a file read. The cache key includes the file's size and
mtime, so an edited image gets a new thumbnail and a stale one is never served.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ._utils import atomic_write_bytes, cache_dir
from .errors import BadImageError
from .images import DEFAULT_MAX_PIXELS, is_image_ref, load_image, ref_signature

THUMBNAIL_SIZES = (64, 128, 256, 512)
"""Sizes served (the longer side, in pixels). A request is rounded up to one of them, so the cache
holds at most four files per image whatever sizes clients ask for."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    etag: str
    media_type: str = "image/jpeg"


class ThumbnailCache:
    """Makes and caches JPEG thumbnails under ``folder`` (default: ``<cache dir>/thumbnails``).

    Only ever called with paths the caller took from an index record, never from a request.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 quality: int = 85) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir() / "thumbnails"
        self.max_pixels = max_pixels
        self.quality = quality

    @staticmethod
    def snap(size: int) -> int:
        """The served size for a requested one: the smallest size at least as large, else the largest."""
        return next((s for s in THUMBNAIL_SIZES if s >= size), THUMBNAIL_SIZES[-1])

    def get(self, path: str | os.PathLike[str], size: int = 256) -> Thumbnail:
        """The thumbnail of ``path`` whose longer side is ``snap(size)`` (never upscaled).

        Raises:
            BadImageError: the file is missing or not a readable image.
        """
        size = self.snap(size)
        try:
            if isinstance(path, str) and is_image_ref(path):  # a shard member or URL: no file of its own
                stamp = ref_signature(path)
            else:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            raise BadImageError(f"{path}: image file is gone") from None
        key = hashlib.sha1(f"{os.fsencode(path)!r}:{stamp}:{size}:{self.quality}".encode())
        etag = key.hexdigest()[:20]
        cached = self.folder / etag[:2] / f"{etag}.jpg"
        try:
            return Thumbnail(cached.read_bytes(), etag)
        except OSError:
            pass
        image = load_image(path, draft_size=(size, size), max_pixels=self.max_pixels)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=self.quality, optimize=True)
        data = buf.getvalue()
        try:
            atomic_write_bytes(cached, data)
        except OSError:  # a read-only or full cache must not break serving
            pass
        return Thumbnail(data, etag)
