"""Robustness perturbations: parsing, determinism, what each does, and the report's keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from itr.errors import InputError, UnknownNameError
from itr.eval import EvalOptions, load_eval_dataset, run_eval
from itr.eval.perturb import KINDS, PIXEL_KINDS, make_transform, parse_perturbation, wrong_captions_for
from itr.testing import ColorEncoder, solid_image


def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("name", sorted(set(KINDS) - set(PIXEL_KINDS)))
def test_each_perturbation_changes_the_image_and_is_seeded(name: str) -> None:
    p = parse_perturbation(name)
    a = make_transform(p, seed=1, wrong_captions=["a dog", "a cat"])
    b = make_transform(p, seed=1, wrong_captions=["a dog", "a cat"])
    img = _photo()
    out = a(img, 0)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(b(img, 0)))  # same seed, same image
    assert out.size != img.size or not np.array_equal(np.asarray(out), np.asarray(img))
    assert np.array_equal(np.asarray(img), np.asarray(_photo()))  # the input is left alone


def test_parameters_and_their_effect() -> None:
    img = _photo()
    crop = make_transform(parse_perturbation("crop@keep=0.25"), seed=0)(img, 3)
    assert crop.size == (40, 30)
    turned = make_transform(parse_perturbation("rotate@degrees=90"), seed=0)(img, 0)
    assert turned.size == (120, 160)
    assert parse_perturbation("jpeg@quality=5").params == {"quality": 5.0}
    for bad, message in (("jpeg@q=5", "takes quality=N"), ("blur@radius=x", "must be a number"),
                         ("crop@keep=0", "out of range"), ("jpeg@quality=200", "out of range")):
        with pytest.raises(InputError, match=message):
            parse_perturbation(bad)
    with pytest.raises(UnknownNameError, match="valid: jpeg, blur, downscale, crop, rotate, typographic"):
        parse_perturbation("noise")


def test_wrong_captions_never_are_the_images_own() -> None:
    captions = [f"caption {i}" for i in range(50)]
    wrong = wrong_captions_for(captions, seed=3)
    assert all(w != c for w, c in zip(wrong, captions, strict=True)) and sorted(wrong) == sorted(captions)


def test_robustness_in_the_report(tmp_path: Path) -> None:
    lines = []
    for name, color in {"r.png": "red", "g.png": "green", "b.png": "blue", "y.png": "yellow"}.items():
        solid_image(tmp_path / name, color, size=(96, 96))
        lines.append(f'{{"image": "{name}", "captions": ["{color}"]}}')
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_eval_dataset(f"jsonl:{tmp_path / 'd.jsonl'}")
    [report] = run_eval(ds, ColorEncoder(), options=EvalOptions(latency_queries=2,
                                                                perturb=("blur", "typographic@size=1")))
    blur, typo = report["perturbations"]["blur"], report["perturbations"]["typographic@size=1"]
    assert blur["kind"] == "blur" and blur["rsum_drop"] == 0.0  # one colour blurs into itself
    # Text as tall as the image: a white box with black letters hides the colour, so the ColorEncoder loses.
    assert typo["rsum_drop"] > 0 and typo["rsum"] == report["rsum"] - typo["rsum_drop"]
    with pytest.raises(UnknownNameError):
        run_eval(ds, ColorEncoder(), options=EvalOptions(perturb=("fog",)))
    with pytest.raises(InputError, match="pgd needs a model with a torch image path"):
        run_eval(ds, ColorEncoder(), options=EvalOptions(perturb=("pgd",)))
    with pytest.raises(InputError, match="out of range"):
        parse_perturbation("pgd@steps=2.5")
