"""Named, seeded image perturbations for robustness evaluation (``itr eval --perturb NAME[@k=v,...]``).

Each perturbation turns a decoded image into the image the model then sees (its own preprocessing
follows), so the figures say how much of a model's recall survives what photos meet in practice:
JPEG artefacts, blur, low resolution, a partial view, a tilt, and a wrong word written on the image
(the typographic attack that fools CLIP-style models: an apple labelled "iPod"). Randomness (crop
position, rotation sign, the wrong word and where it goes) is drawn from ``(seed, image position)``,
so a run is reproducible and every model sees the same perturbed images.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import InputError, UnknownNameError

Transform = Callable[[Image.Image, int], Image.Image]
"""(decoded image, its position in the dataset) -> the perturbed image."""


@dataclass(frozen=True)
class PerturbationKind:
    name: str
    params: dict[str, float]  # the knobs and their defaults
    help: str


KINDS: dict[str, PerturbationKind] = {k.name: k for k in (
    PerturbationKind("jpeg", {"quality": 10}, "re-encode as JPEG at this quality (1-95)"),
    PerturbationKind("blur", {"radius": 3}, "Gaussian blur of this radius, in pixels of a 224-pixel side"),
    PerturbationKind("downscale", {"factor": 4}, "shrink by this factor, then enlarge back (lost detail)"),
    PerturbationKind("crop", {"keep": 0.5}, "keep this fraction of each side, at a random position"),
    PerturbationKind("rotate", {"degrees": 30}, "turn by this angle, either way at random (white corners)"),
    PerturbationKind("typographic", {"size": 0.2}, "write another item's caption on the image, text this "
                     "fraction of the image height, at a random place"),
    PerturbationKind("pgd", {"eps": 2, "steps": 10, "step": 0.5}, "white-box PGD on the image encoder: "
                     "L-infinity budget eps and step in raw pixel levels (0-255), steps iterations (eval.attack)"),
)}
PIXEL_KINDS = ("pgd",)
"""Perturbations of the model's input pixels with its gradients, not of the decoded image."""


@dataclass(frozen=True)
class Perturbation:
    """A parsed ``--perturb`` spec: ``spec`` as given, ``kind`` and its resolved ``params``."""

    spec: str
    kind: str
    params: dict[str, float]


def parse_perturbation(spec: str) -> Perturbation:
    """``NAME`` or ``NAME@key=value[,key=value]``; errors list the names or the keys."""
    name, _, rest = spec.partition("@")
    if name not in KINDS:
        raise UnknownNameError(f"unknown perturbation '{name}'; valid: {', '.join(KINDS)}")
    params = dict(KINDS[name].params)
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if key not in params or not eq:
            raise InputError(f"--perturb {spec}: '{name}' takes {', '.join(f'{k}=N' for k in params)}")
        try:
            params[key] = float(value)
        except ValueError:
            raise InputError(f"--perturb {spec}: {key} must be a number, got '{value}'") from None
    _check(spec, name, params)
    return Perturbation(spec, name, params)


def _check(spec: str, name: str, p: dict[str, float]) -> None:
    ok = {"jpeg": 1 <= p.get("quality", 1) <= 95, "blur": p.get("radius", 0) >= 0,
          "downscale": p.get("factor", 1) >= 1, "crop": 0 < p.get("keep", 1) <= 1,
          "rotate": -360 <= p.get("degrees", 0) <= 360, "typographic": 0 < p.get("size", 1) <= 1,
          "pgd": p.get("eps", 0) >= 0 and p.get("steps", 0) >= 0 and float(p.get("steps", 0)).is_integer()
          and p.get("step", 0) >= 0}[name]
    if not ok:
        raise InputError(f"--perturb {spec}: value out of range ({KINDS[name].help})")


def make_transform(p: Perturbation, *, seed: int, wrong_captions: Sequence[str] = ()) -> Transform:
    """The function that applies ``p`` to the image at a given dataset position.

    ``wrong_captions[i]``: the text ``typographic`` writes on image ``i`` (another item's caption).
    """
    def rng(position: int) -> np.random.Generator:
        return np.random.default_rng([seed, position])

    q = p.params
    if p.kind in PIXEL_KINDS:
        raise ValueError(f"'{p.kind}' perturbs model inputs with gradients: see itr.eval.attack")
    if p.kind == "jpeg":
        def jpeg(img: Image.Image, _: int) -> Image.Image:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(q["quality"]))
            buf.seek(0)
            with Image.open(buf) as out:
                return out.convert("RGB")
        return jpeg
    if p.kind == "blur":
        # Radius relative to a 224-pixel side, so one setting means the same on any image size.
        return lambda img, _: img.filter(ImageFilter.GaussianBlur(q["radius"] * min(img.size) / 224))
    if p.kind == "downscale":
        def downscale(img: Image.Image, _: int) -> Image.Image:
            small = img.resize((max(1, round(img.width / q["factor"])), max(1, round(img.height / q["factor"]))),
                               Image.Resampling.BILINEAR)
            return small.resize(img.size, Image.Resampling.BILINEAR)
        return downscale
    if p.kind == "crop":
        def crop(img: Image.Image, position: int) -> Image.Image:
            w, h = max(1, round(img.width * q["keep"])), max(1, round(img.height * q["keep"]))
            r = rng(position)
            x, y = int(r.integers(0, img.width - w + 1)), int(r.integers(0, img.height - h + 1))
            return img.crop((x, y, x + w, y + h))
        return crop
    if p.kind == "rotate":
        def rotate(img: Image.Image, position: int) -> Image.Image:
            sign = 1 if rng(position).random() < 0.5 else -1
            return img.rotate(sign * q["degrees"], resample=Image.Resampling.BILINEAR, expand=True,
                              fillcolor=(255, 255, 255))
        return rotate
    if not wrong_captions:
        raise InputError("typographic needs the other items' captions to write on each image")

    def typographic(img: Image.Image, position: int) -> Image.Image:
        text = wrong_captions[position][:40]
        out = img.copy()
        draw = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=max(8, round(q["size"] * img.height)))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        r = rng(position)
        x = int(r.integers(0, max(1, img.width - tw)))
        y = int(r.integers(0, max(1, img.height - th)))
        pad = max(2, th // 6)
        draw.rectangle((x - pad, y - pad, x + tw + pad, y + th + pad), fill=(255, 255, 255))
        draw.text((x - left, y - top), text, fill=(0, 0, 0), font=font)
        return out
    return typographic


def wrong_captions_for(captions: Sequence[str], seed: int) -> list[str]:
    """For each image, the first caption of another image (a seeded derangement of the images)."""
    n = len(captions)
    if n < 2:
        return list(captions)
    order = np.random.default_rng(seed).permutation(n)
    shift = {int(a): int(b) for a, b in zip(order, np.roll(order, 1), strict=True)}  # a cycle: never itself
    return [captions[shift[i]] for i in range(n)]


def describe(p: Perturbation) -> dict[str, Any]:
    return {"kind": p.kind, "params": p.params}
