"""Bootstrap confidence intervals for Recall@K and RSUM, and a paired bootstrap test between runs.

The test splits here hold 100-300 images: one query more or less moves R@1 by 0.3-1 point, so a
difference between two models must be told apart from noise. The resampling unit is the **image**
(with all its captions): i2t queries are images, t2i queries are their captions, and captions of one
image are not independent of each other, so resampling captions alone would make intervals too
narrow. The gallery stays the whole dataset (ranks are computed once, on every item); what is
resampled is the set of queries, as in the usual bootstrap of a test-set metric.

Several languages: each resample draws images once and uses the same draw in every language; the
headline is the mean over languages, as in the report.

Percentile intervals; the paired test (Koehn 2004, "Statistical significance tests for machine
translation evaluation") applies the same draws to both runs and reports the two-sided share of
resamples whose difference has the other sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import DEFAULT_KS

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class LanguageRanks:
    """One language's ranks over the shared images: ``i2t[i]`` of image ``i``, ``t2i[t]`` of text
    ``t``, which describes image ``text_image[t]``."""

    i2t: np.ndarray
    t2i: np.ndarray
    text_image: np.ndarray


def _draws(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n_images)``: how many times each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=resamples).astype(np.float64)


def _recalls(draws: np.ndarray, ranks: LanguageRanks, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per resample and K, R@K both ways (percent): ``{"i2t@K": (resamples,), "t2i@K": ...}``."""
    n_images = draws.shape[1]
    i2t = np.asarray(ranks.i2t, dtype=np.float64)
    t2i = np.asarray(ranks.t2i, dtype=np.float64)
    text_image = np.asarray(ranks.text_image, dtype=np.int64)
    captions = np.bincount(text_image, minlength=n_images).astype(np.float64)
    drawn_texts = draws @ captions  # texts in each resample (an image brings all its captions)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"i2t@{k}"] = 100.0 * (draws @ (i2t <= k).astype(np.float64)) / n_images
        hits = np.bincount(text_image, weights=(t2i <= k).astype(np.float64), minlength=n_images)
        out[f"t2i@{k}"] = 100.0 * (draws @ hits) / np.maximum(drawn_texts, 1.0)
    return out


def _headline(draws: np.ndarray, languages: Sequence[LanguageRanks], ks: Sequence[int]) -> dict[str, np.ndarray]:
    per = [_recalls(draws, lang, ks) for lang in languages]
    mean = {key: np.mean([p[key] for p in per], axis=0) for key in per[0]}
    mean["rsum"] = np.sum([mean[f"{d}@{k}"] for d in ("i2t", "t2i") for k in ks], axis=0)
    return mean


def _interval(values: np.ndarray, level: float) -> list[float]:
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return [round(float(lo), 4), round(float(hi), 4)]


def _check(languages: Sequence[LanguageRanks]) -> int:
    if not languages:
        raise ValueError("no ranks to resample")
    n_images = len(languages[0].i2t)
    if n_images == 0 or any(len(lang.i2t) != n_images for lang in languages):
        raise ValueError("every language must rank the same, non-empty set of images")
    return n_images


def confidence_intervals(languages: Sequence[LanguageRanks], *, resamples: int = DEFAULT_RESAMPLES,
                         seed: int = 0, level: float = LEVEL, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Percentile bootstrap intervals of the headline R@K both ways and RSUM.

    Returns:
        ``{"level", "resamples", "unit": "image", "seed", "i2t": {"R@K": [lo, hi]}, "t2i": {...},
        "rsum": [lo, hi]}`` (percent; RSUM 0-600).
    """
    if resamples < 10:
        raise ValueError(f"resamples must be at least 10, got {resamples}")
    draws = _draws(_check(languages), resamples, seed)
    values = _headline(draws, languages, ks)
    return {"level": level, "resamples": resamples, "unit": "image", "seed": seed,
            **{d: {f"R@{k}": _interval(values[f"{d}@{k}"], level) for k in ks} for d in ("i2t", "t2i")},
            "rsum": _interval(values["rsum"], level)}


def paired_test(a: Sequence[LanguageRanks], b: Sequence[LanguageRanks], *, resamples: int = DEFAULT_RESAMPLES,
                seed: int = 0, level: float = LEVEL, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Paired bootstrap of ``RSUM(b) - RSUM(a)`` (and t2i R@1) over the same image draws.

    Both runs must rank the same queries (one dataset, same split and captions): ValueError otherwise.

    Returns:
        ``{"rsum_difference", "rsum_difference_ci", "t2i_r1_difference", "t2i_r1_difference_ci",
        "p_value", "resamples", "seed"}``; ``p_value`` is two-sided for the RSUM difference.
    """
    n = _check(a)
    if _check(b) != n or len(a) != len(b) or any(
            not np.array_equal(x.text_image, y.text_image) for x, y in zip(a, b, strict=True)):
        raise ValueError("the two runs rank different queries: compare runs of the same dataset, split and captions")
    draws = _draws(n, resamples, seed)
    va, vb = _headline(draws, a, ks), _headline(draws, b, ks)
    full = np.ones((1, n))
    observed = float(_headline(full, b, ks)["rsum"][0] - _headline(full, a, ks)["rsum"][0])
    diff = vb["rsum"] - va["rsum"]
    # Two-sided: how often a resample's difference falls on the other side of zero (ties count half).
    below = float(np.mean(diff < 0) + 0.5 * np.mean(diff == 0))
    p = min(1.0, 2.0 * min(below, 1.0 - below))
    r1 = vb["t2i@1"] - va["t2i@1"]
    observed_r1 = float(_headline(full, b, ks)["t2i@1"][0] - _headline(full, a, ks)["t2i@1"][0])
    return {"rsum_difference": round(observed, 4), "rsum_difference_ci": _interval(diff, level),
            "t2i_r1_difference": round(observed_r1, 4), "t2i_r1_difference_ci": _interval(r1, level),
            "p_value": round(p, 4), "resamples": resamples, "seed": seed}
