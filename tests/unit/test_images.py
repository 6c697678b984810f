from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from itr.errors import BadImageError
from itr.images import load_image, to_rgb


def test_rgb_png_loads(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGB", (10, 8), (1, 2, 3)).save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (10, 8) and img.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"hello, not an image", "not a readable image")])
def test_empty_and_non_image_files(tmp_path: Path, content: bytes, reason: str) -> None:
    p = tmp_path / "x.jpg"
    p.write_bytes(content)
    with pytest.raises(BadImageError, match=reason) as info:
        load_image(p)
    assert "x.jpg" in str(info.value) and "\n" not in str(info.value)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buf, format="JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        load_image(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="cannot read"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(p)  # 144 MP of 1-bit pixels: a small file, a huge decode
    assert p.stat().st_size < 200_000
    with pytest.raises(BadImageError, match="too large|limit"):
        load_image(p)
    with pytest.raises(BadImageError, match="; raise --max-pixels to index it$"):
        load_image(tmp_path / "bomb.png", max_pixels=1000, too_large_hint="raise --max-pixels to index it")
    with pytest.raises(BadImageError) as refused:  # no hint of a flag the caller does not have
        load_image(tmp_path / "bomb.png", max_pixels=1000)
    assert "--max-pixels" not in str(refused.value)


def test_max_pixels_can_be_raised(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(p)
    with pytest.raises(BadImageError):
        load_image(p, max_pixels=10_000)
    assert load_image(p, max_pixels=100_000).size == (300, 300)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    r, g, b = load_image(p).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_16bit_greyscale_is_stretched_not_clipped(tmp_path: Path) -> None:
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    img = load_image(p)
    assert img.mode == "RGB"
    px = np.asarray(img)[..., 0]
    assert px.min() == 0 and px.max() == 255 and 100 < px.mean() < 155


def test_palette_with_transparency_and_alpha_composite_on_white(tmp_path: Path) -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    p1 = tmp_path / "pal.png"
    pal.save(p1, transparency=0)
    assert load_image(p1).getpixel((0, 0)) == (255, 255, 255)
    p2 = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(p2)
    assert load_image(p2).getpixel((0, 0)) == (255, 255, 255)
    p3 = tmp_path / "la.png"
    Image.new("LA", (8, 8), (0, 255)).save(p3)
    assert load_image(p3).getpixel((0, 0)) == (0, 0, 0)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    r, g, b = load_image(p).getpixel((4, 4))
    assert r > 200 and b < 50


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).size == (20, 40)


def test_jpeg_draft_decodes_smaller_but_not_below_request(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (9, 9, 9)).save(p)
    img = load_image(p, draft_size=(224, 224))
    assert 224 <= min(img.size) < 1500


def test_to_rgb_float_image() -> None:
    f = Image.fromarray(np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(f))[..., 0].tolist() == [[0, 85], [170, 255]]
