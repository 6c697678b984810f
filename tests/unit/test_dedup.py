"""Perceptual-hash de-duplication of training images against evaluation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from itr.train.dedup import near_duplicates, perceptual_hashes


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (200, 160), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, 150, 2))
        draw.ellipse((x, y, x + 50, y + 40), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def test_reencoded_resized_and_flattened_copies_match_and_others_do_not(tmp_path: Path) -> None:
    a, b = _picture(1), _picture(2)
    a.save(tmp_path / "a.png")
    a.resize((100, 80)).save(tmp_path / "a_small.jpg", quality=70)  # rescaled and re-encoded
    rgba = a.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(tmp_path / "a_alpha.png")
    b.save(tmp_path / "b.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    train = perceptual_hashes([str(tmp_path / n) for n in ("a_small.jpg", "a_alpha.png", "b.png", "broken.png")])
    evaluation = perceptual_hashes([str(tmp_path / "a.png")])
    assert train[3, 0] == 0  # unreadable: no hash, and it matches nothing
    assert near_duplicates(train, evaluation).tolist() == [True, True, False, False]
    assert near_duplicates(train, np.zeros((1, 7), dtype=np.uint64)).tolist() == [False] * 4
    again = perceptual_hashes([str(tmp_path / n) for n in ("a_small.jpg", "a_alpha.png", "b.png", "broken.png")])
    assert (again == train).all()  # from the cache, identical


def test_same_shape_in_another_colour_is_not_a_duplicate(tmp_path: Path) -> None:
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220)), ("red2", (225, 25, 20))):
        img = Image.new("RGB", (120, 120), "white")
        ImageDraw.Draw(img).polygon([(60, 10), (110, 110), (10, 110)], fill=colour)
        img.save(tmp_path / f"{name}.png")
    sig = perceptual_hashes([str(tmp_path / f"{n}.png") for n in ("red", "blue", "red2")])
    assert np.bitwise_count(sig[0, 0] ^ sig[1, 0]) <= 6  # pHash alone would call them one picture
    assert near_duplicates(sig[1:], sig[:1]).tolist() == [False, True]


def test_distance_threshold_counts_bits() -> None:
    ev = np.zeros((1, 7), dtype=np.uint64)
    ev[0, 0] = 0b1111 << 20
    train = np.zeros((3, 7), dtype=np.uint64)
    train[:, 0] = [ev[0, 0] ^ np.uint64(0b111), ev[0, 0] ^ np.uint64(0b1111111), 0]
    assert near_duplicates(train, ev, max_distance=3).tolist() == [True, False, False]
    assert near_duplicates(train, ev, max_distance=7).tolist() == [True, True, False]
