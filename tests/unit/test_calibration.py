"""The "no good match" threshold: fitting by hand, its file, and min_score in search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import color_index

from itr.calibration import (
    Calibration,
    answer_rates,
    fit_threshold,
    read_calibration,
    top1_scores,
    write_calibration,
)
from itr.errors import InputError
from itr.index import DenseIndex
from itr.search import Mode, Searcher, SearchOptions
from itr.testing import ColorEncoder, DimensionSparseEncoder


def test_top1_scores_present_and_absent() -> None:
    scores = np.array([[0.9, 0.2, 0.5], [0.3, 0.8, 0.5]])  # images x texts; text 2 describes image 1
    present, correct, absent = top1_scores(scores, np.array([0, 1, 1]))
    assert present.tolist() == [0.9, 0.8, 0.5] and absent.tolist() == [0.3, 0.2, 0.5]
    assert correct.tolist() == [True, True, False]  # text 2 ties with the other image: wrong


def test_fit_picks_the_lowest_threshold_that_reaches_the_target() -> None:
    # Four queries. Present top-1 scores 0.9, 0.8 (right), 0.6 (wrong), 0.5 (right); absent 0.7, 0.4, 0.3, 0.2.
    present = np.array([0.9, 0.8, 0.6, 0.5])
    correct = np.array([True, True, False, True])
    absent = np.array([0.7, 0.4, 0.3, 0.2])
    # At 0.8: 2 answers, both right (1.0). At 0.7: 3 answers, 2 right (0.67). At 0.5: 5 answers, 3 right.
    t, rates, reached = fit_threshold(present, correct, absent, 0.9)
    assert t == 0.8 and reached and rates["answer_precision"] == 1.0 and rates["coverage"] == 0.5
    t, _, reached = fit_threshold(present, correct, absent, 0.6)
    assert t == 0.5 and reached  # 3 right of 5 answers
    r = answer_rates(0.75, present, correct, absent)
    # Below 0.75: absent all four (flagged right), present 0.6 and 0.5 (flagged wrongly).
    assert r["no_match_recall"] == 1.0 and r["no_match_precision"] == pytest.approx(4 / 6)
    with pytest.raises(InputError, match="target precision"):
        fit_threshold(present, correct, absent, 1.5)
    # Unreachable: every right answer comes with a wrong one at the same score.
    t, rates, reached = fit_threshold(np.array([0.5]), np.array([True]), np.array([0.5]), 0.9)
    assert not reached and rates["answer_precision"] == 0.5


def test_calibration_file_is_checked_against_the_model(tmp_path: Path) -> None:
    cal = Calibration(threshold=0.3, target_precision=0.9, precision=0.92, coverage=0.4, queries=10,
                      model_fingerprint="abc", model="builtin", dataset="d (val)", reached_target=True)
    write_calibration(tmp_path, cal)
    assert read_calibration(tmp_path, "abc") == cal
    with pytest.raises(InputError, match="fitted for model 'builtin'"):
        read_calibration(tmp_path, "other")
    with pytest.raises(InputError, match="no calibrated threshold; run: itr calibrate"):
        read_calibration(tmp_path / "none", "abc")
    (tmp_path / "calibration.json").write_text("{")
    with pytest.raises(InputError, match="unreadable calibration"):
        read_calibration(tmp_path, "abc")


def test_min_score_cuts_hits_and_says_no_good_match(tmp_path: Path) -> None:
    index = color_index(tmp_path)
    enc = ColorEncoder()
    s = Searcher(enc, DenseIndex.open(index), DimensionSparseEncoder(enc.dim))
    full = s.query_texts(["red"], SearchOptions(k=12))[0]
    best = full.hits[0].score
    some = s.query_texts(["red"], SearchOptions(k=12, min_score=best - 1e-6))[0]
    assert some.hits and all(h.score >= best - 1e-6 for h in some.hits) and not some.no_good_match
    none = s.query_texts(["red"], SearchOptions(k=12, min_score=best + 0.01))[0]
    assert none.hits == [] and none.no_good_match and none.best_score == pytest.approx(best)
    with pytest.raises(InputError, match="applies to dense scores"):
        s.query_texts(["red"], SearchOptions(k=3, mode=Mode.SPARSE, min_score=0.1))
    with pytest.raises(InputError, match="no calibrated threshold"):
        s.calibrated_min_score()
    write_calibration(index, Calibration(threshold=0.5, target_precision=0.9, precision=1.0, coverage=1.0, queries=4,
                                         model_fingerprint=enc.fingerprint, model=enc.spec, dataset="x",
                                         reached_target=True))
    assert s.calibrated_min_score() == 0.5
    assert len(list(DenseIndex.open(index).items())) == 12  # the extra file leaves the index loadable
