"""Reading images from disk safely: one function that either returns an RGB image or raises BadImageError.

Every odd case a real photo folder holds is handled here once, so encoders only ever see 8-bit RGB:
EXIF rotation, CMYK, 16-bit and float greyscale, palettes with transparency, alpha (composited on
white, as a viewer shows it), animated images (first frame), empty and truncated files, and images so
large that decoding them is a denial of service (a "decompression bomb").
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._utils import display_path
from .errors import BadImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's own decompression-bomb threshold (about 9500 x 9500); larger images are refused."""

_BACKGROUND = (255, 255, 255)

# Pillow warns (and only errors at twice the limit) for images above MAX_IMAGE_PIXELS; load_image
# refuses every such image itself with a clear BadImageError, so the warning would only add noise.
# A process-wide filter, because warnings.catch_warnings is not thread-safe and decoding is threaded.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(
    path: str | os.PathLike[str],
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    too_large_hint: str | None = None,
    exif_transpose: bool = True,
) -> Image.Image:
    """Open an image file as 8-bit RGB.

    Args:
        path: The file.
        draft_size: If given, JPEGs are decoded at the smallest power-of-two reduction that is still at
            least this size (Pillow ``draft``): several times faster for photos bigger than the model's
            input, with no visible loss once the model resizes anyway.
        max_pixels: Refuse images with more pixels than this (decompression-bomb guard).
        too_large_hint: What the message about an image over ``max_pixels`` tells the user to do
            (the caller knows which setting raises the limit, if any).
        exif_transpose: Turn the image as its EXIF orientation says (as a viewer shows it). The
            benchmarks' reference loaders do not (``Image.open(p).convert("RGB")``), so evaluation
            that must reproduce them turns it off.

    Raises:
        BadImageError: with a one-line reason naming the file.
    """
    if isinstance(path, str) and is_image_ref(path):
        return _decode(io.BytesIO(read_ref_bytes(path)), ref_display(path), draft_size, max_pixels,
                       too_large_hint, exif_transpose)
    shown = display_path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadImageError(f"{shown}: cannot read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block until a writer comes; a device could be endless.
        raise BadImageError(f"{shown}: not a regular file ({file_kind(st.st_mode)}); only image files can be read")
    if st.st_size == 0:
        raise BadImageError(f"{shown}: empty file (0 bytes)")
    return _decode(path, shown, draft_size, max_pixels, too_large_hint, exif_transpose)


# -- images that are not files of their own: tar shard members and URLs ---------------------------
# Sources such as img2dataset's webdataset shards and parquet/CSV tables of URLs name images that
# are no file on disk. They are stored as references that no resolved absolute path can be:
#   tar:OFFSET:SIZE:/abs/shard.tar//member.jpg   (a member's bytes, read with one seek)
#   http://... or https://...                      (fetched when needed, size- and time-bounded)
TAR_REF = "tar:"
URL_PREFIXES = ("http://", "https://")
MAX_REF_BYTES = 64 << 20  # a single image above 64 MiB is refused (a table row cannot make ITR fetch GBs)
URL_TIMEOUT_S = 15.0


def is_image_ref(value: str) -> bool:
    return value.startswith(TAR_REF) or value.startswith(URL_PREFIXES)


def tar_ref(tar_path: str, member: str, offset: int, size: int) -> str:
    return f"{TAR_REF}{offset}:{size}:{tar_path}//{member}"


def _parse_tar_ref(ref: str) -> tuple[int, int, str, str]:
    try:
        offset, size, rest = ref[len(TAR_REF):].split(":", 2)
        tar_path, member = rest.split("//", 1)
        return int(offset), int(size), tar_path, member
    except ValueError:
        raise BadImageError(f"{ref[:200]}: not a tar member reference (tar:OFFSET:SIZE:/path.tar//member)") from None


def ref_display(ref: str) -> str:
    """How a reference is shown: ``shard.tar//member.jpg`` or the URL."""
    if ref.startswith(TAR_REF):
        _, _, tar_path, member = _parse_tar_ref(ref)
        return f"{display_path(tar_path)}//{member}"
    return ref[:300]


def ref_signature(ref: str) -> str:
    """Changes when the referenced bytes may have changed (the shard's size and time; a URL: never known)."""
    if ref.startswith(TAR_REF):
        offset, size, tar_path, _ = _parse_tar_ref(ref)
        st = os.stat(tar_path)
        return f"{st.st_size}:{st.st_mtime_ns}:{offset}:{size}"
    return "url"


def read_ref_bytes(ref: str) -> bytes:
    """The bytes a reference names. Raises BadImageError with a one-line reason."""
    shown = ref_display(ref)
    if ref.startswith(TAR_REF):
        offset, size, tar_path, member = _parse_tar_ref(ref)
        if size <= 0:
            raise BadImageError(f"{shown}: empty member (0 bytes)")
        if size > MAX_REF_BYTES:
            raise BadImageError(f"{shown}: {size / 2**20:.0f} MiB, above the {MAX_REF_BYTES >> 20} MiB limit of one image")
        try:
            with open(tar_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size)
        except OSError as exc:
            raise BadImageError(f"{shown}: cannot read the shard ({exc.strerror or exc})") from exc
        if len(data) != size:
            raise BadImageError(f"{shown}: the shard is shorter than its index says (changed since indexing?)")
        return data
    import urllib.error
    import urllib.request

    try:
        req = urllib.request.Request(ref, headers={"User-Agent": "itr (image-text retrieval)"})
        with urllib.request.urlopen(req, timeout=URL_TIMEOUT_S) as resp:  # noqa: S310 - http(s) only, checked above
            data = resp.read(MAX_REF_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error holds the response open
        raise BadImageError(f"{shown}: cannot download ({exc.reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BadImageError(f"{shown}: cannot download ({reason})") from exc
    if len(data) > MAX_REF_BYTES:
        raise BadImageError(f"{shown}: larger than the {MAX_REF_BYTES >> 20} MiB limit of one image")
    if not data:
        raise BadImageError(f"{shown}: empty response")
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for messages."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def load_image_bytes(data: bytes, name: str, *, draft_size: tuple[int, int] | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, too_large_hint: str | None = None) -> Image.Image:
    """``load_image`` for an image held in memory (an upload); ``name`` is used in error messages."""
    if not data:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, draft_size, max_pixels, too_large_hint)


def image_format(data: bytes) -> str | None:
    """The Pillow format name of an encoded image (``"JPEG"``, ``"PNG"``...), or None if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _decode(source: str | os.PathLike[str] | io.BytesIO, shown: str, draft_size: tuple[int, int] | None,
            max_pixels: int, hint: str | None, exif_transpose: bool = True) -> Image.Image:
    if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        # The caller asked for a larger limit than Pillow's; Pillow would still refuse at open time.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        img = Image.open(source)
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{shown}: not a readable image (unknown or corrupt format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(shown, exc, hint) from exc
    except OSError as exc:
        raise BadImageError(f"{shown}: cannot open ({exc})") from exc
    try:
        width, height = img.size
        if width * height > max_pixels:
            raise BadImageError(
                f"{shown}: image is {width}x{height} ({width * height / 1e6:.0f} MP), above the "
                f"{max_pixels / 1e6:.0f} MP limit that guards against decompression bombs"
                + (f"; {hint}" if hint else "")
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
        return to_rgb(img, exif_transpose=exif_transpose)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(shown, exc, hint) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated/corrupt data as OSError ("image file is truncated"), SyntaxError
        # (some PNG chunk errors) or ValueError.
        raise BadImageError(f"{shown}: corrupt or truncated image data ({exc})") from exc
    finally:
        img.close()


def _bomb(shown: str, exc: Exception, hint: str | None) -> BadImageError:
    return BadImageError(f"{shown}: image too large to decode safely ({exc})" + (f"; {hint}" if hint else ""))


def to_rgb(img: Image.Image, *, exif_transpose: bool = True) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB the way an image viewer would display it (without the
    EXIF turn when ``exif_transpose`` is False)."""
    original = img
    if exif_transpose:
        try:
            img = ImageOps.exif_transpose(img) or img  # a new image (turned or copied)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not make a viewable image unusable
            pass
    mode = img.mode
    if mode == "RGB":
        # The caller closes the image it opened: hand back a new one.
        return img.copy() if img is original or img.readonly else img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit greyscale: stretch the actual value range to 8 bits (a plain convert("L")
        # clips everything above 255 to white).
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")
