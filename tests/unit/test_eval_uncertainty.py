"""Bootstrap intervals and the paired test: seeded, bracketing the estimate, and right on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from itr.errors import InputError
from itr.eval import uncertainty
from itr.eval.runner import add_comparisons, compare_reports


def _ranks(n_images: int, hit_rate: float, seed: int, captions: int = 2) -> uncertainty.LanguageRanks:
    rng = np.random.default_rng(seed)
    text_image = np.repeat(np.arange(n_images), captions)
    i2t = np.where(rng.random(n_images) < hit_rate, 1, 20)
    t2i = np.where(rng.random(len(text_image)) < hit_rate, 1, 20)
    return uncertainty.LanguageRanks(i2t, t2i, text_image)


def test_interval_brackets_the_estimate_and_narrows_with_more_images() -> None:
    small = uncertainty.confidence_intervals([_ranks(50, 0.4, 0)], resamples=500)
    large = uncertainty.confidence_intervals([_ranks(2000, 0.4, 0)], resamples=500)
    r = _ranks(2000, 0.4, 0)
    estimate = 100 * np.mean(r.t2i <= 1)
    lo, hi = large["t2i"]["R@1"]
    assert lo <= estimate <= hi
    width = lambda ci: ci["t2i"]["R@1"][1] - ci["t2i"]["R@1"][0]  # noqa: E731
    assert width(large) < width(small) / 3  # ~ 1/sqrt(n): sqrt(40) = 6.3
    # Binomial standard error at p = 0.4 over 4000 texts is 0.77 points, but an image brings both
    # captions (independent here), so the 95 % width is about 2 * 1.96 * 0.77 = 3.0.
    assert 2.0 < width(large) < 4.5
    assert large["unit"] == "image" and large["resamples"] == 500 and set(large["i2t"]) == {"R@1", "R@5", "R@10"}


def test_seeded_and_rsum_is_the_sum() -> None:
    ranks = [_ranks(100, 0.5, 1)]
    a = uncertainty.confidence_intervals(ranks, resamples=200, seed=7)
    assert a == uncertainty.confidence_intervals(ranks, resamples=200, seed=7)
    assert a != uncertainty.confidence_intervals(ranks, resamples=200, seed=8)
    # Every rank is 1 or 20: R@1 = R@5 = R@10, so RSUM's interval is 3x(i2t + t2i) of one resample.
    assert a["rsum"][0] >= 3 * (a["i2t"]["R@1"][0] + a["t2i"]["R@1"][0]) - 1e-6
    with pytest.raises(ValueError, match="at least 10"):
        uncertainty.confidence_intervals(ranks, resamples=5)


def test_a_perfect_run_has_a_zero_width_interval() -> None:
    r = uncertainty.LanguageRanks(np.ones(30), np.ones(60), np.repeat(np.arange(30), 2))
    ci = uncertainty.confidence_intervals([r], resamples=100)
    assert ci["rsum"] == [600.0, 600.0] and ci["t2i"]["R@1"] == [100.0, 100.0]


def test_paired_test_tells_a_real_gain_from_none() -> None:
    base = _ranks(300, 0.3, 2)
    same = uncertainty.paired_test([base], [base], resamples=300)
    assert same["rsum_difference"] == 0.0 and same["p_value"] == 1.0
    # Better on every query where base missed one in two: a large, certain gain.
    better_t2i = np.where((base.t2i > 1) & (np.arange(len(base.t2i)) % 2 == 0), 1, base.t2i)
    better = uncertainty.LanguageRanks(base.i2t, better_t2i, base.text_image)
    gain = uncertainty.paired_test([base], [better], resamples=300)
    assert gain["rsum_difference"] > 50 and gain["p_value"] < 0.01
    assert gain["rsum_difference_ci"][0] > 0 and gain["t2i_r1_difference"] > 0
    # Swapping the two runs flips the sign, not the p-value.
    back = uncertainty.paired_test([better], [base], resamples=300)
    assert back["rsum_difference"] == -gain["rsum_difference"] and back["p_value"] == gain["p_value"]
    with pytest.raises(ValueError, match="different queries"):
        uncertainty.paired_test([base], [_ranks(300, 0.3, 2, captions=3)], resamples=100)


def test_languages_share_the_image_draws() -> None:
    # Two languages with identical ranks: the headline interval equals the one-language interval.
    r = _ranks(80, 0.5, 3)
    assert (uncertainty.confidence_intervals([r, r], resamples=200)
            == uncertainty.confidence_intervals([r], resamples=200))


def _report(model: str, ranks: uncertainty.LanguageRanks, dataset: str = "d") -> dict:
    return {"dataset": dataset, "split": "test", "model": model, "index": "exact",
            "ranks": {"en": {"i2t": ranks.i2t.tolist(), "t2i": ranks.t2i.tolist(),
                             "text_image": ranks.text_image.tolist()}}}


def test_saved_reports_compare_against_the_first_run_of_their_dataset() -> None:
    a, b = _ranks(100, 0.3, 4), _ranks(100, 0.6, 5)
    reports = [_report("a", a), _report("b", b), _report("c", a, dataset="other"), {"dataset": "d", "model": "x"}]
    add_comparisons(reports, resamples=100)
    assert "compared_to" not in reports[0] and "compared_to" not in reports[2]
    assert reports[1]["compared_to"]["baseline"] == "a" and reports[1]["compared_to"]["rsum_difference"] > 0
    with pytest.raises(InputError, match="different datasets"):
        compare_reports(reports[0], reports[2])
    with pytest.raises(InputError, match="--ci"):
        compare_reports(reports[0], {"dataset": "d", "split": "test", "model": "x"})
