"""A score threshold below which a search says "no good match" instead of returning unrelated items.

Dense search always returns the k nearest items, even when nothing in the index matches the query.
A calibrated threshold tells the two cases apart. It is fitted on validation queries of a labelled
set (``itr calibrate INDEX --on DATASET``): each text query is asked twice, once with its image in
the gallery (*present*: the answer is right when its image ranks first) and once with that image
left out (*absent*: any answer is wrong). The threshold is the lowest top-1 score at which the
answers given reach the target precision, so that, with half the queries having no match, at least
that share of the answers given is right, and as many right answers as possible are kept.

Scores are the model's dense cosine scores (dense search, and hybrid ``rescore``, which returns
dense scores); a threshold is only valid for the model it was fitted with, which the file records.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import atomic_write_bytes
from .errors import InputError

CALIBRATION_FILE = "calibration.json"
CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A fitted threshold and what it achieved on the queries it was fitted on."""

    threshold: float
    target_precision: float
    precision: float  # of the answers given (present queries answered right / all answers given)
    coverage: float  # present queries answered right, of all present queries
    queries: int
    model_fingerprint: str
    model: str
    dataset: str
    reached_target: bool
    version: int = CALIBRATION_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def top1_scores(scores: np.ndarray, text_image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From ``(n_images, n_texts)`` scores: per text query the top-1 score with its image present,
    whether that top-1 is its image (a tie with another image counts as wrong), and the top-1 score
    with its image left out."""
    cols = np.arange(scores.shape[1])
    own = scores[text_image, cols]
    others = scores.copy()
    others[text_image, cols] = -np.inf
    absent = others.max(axis=0)
    return np.maximum(own, absent), own > absent, absent


def answer_rates(threshold: float, present: np.ndarray, correct: np.ndarray, absent: np.ndarray) -> dict[str, float]:
    """Precision of the answers given and the "no good match" precision/recall at ``threshold``."""
    answered_right = int(np.sum((present >= threshold) & correct))
    answered = int(np.sum(present >= threshold) + np.sum(absent >= threshold))
    flagged_absent = int(np.sum(absent < threshold))
    flagged_present = int(np.sum(present < threshold))
    n = len(present)
    return {
        "answer_precision": answered_right / answered if answered else 1.0,
        "coverage": answered_right / n if n else 0.0,
        "no_match_precision": flagged_absent / (flagged_absent + flagged_present) if flagged_absent + flagged_present else 1.0,
        "no_match_recall": flagged_absent / n if n else 0.0,
    }


def fit_threshold(present: np.ndarray, correct: np.ndarray, absent: np.ndarray,
                  target_precision: float) -> tuple[float, dict[str, float], bool]:
    """The lowest threshold whose answer precision reaches ``target_precision``; if none does, the
    one with the best precision. Returns ``(threshold, rates at it, reached)``."""
    if not 0 < target_precision <= 1:
        raise InputError(f"target precision must be in (0, 1], got {target_precision}")
    if len(present) == 0:
        raise InputError("no validation query to calibrate on")
    candidates = np.unique(np.concatenate([present, absent]))  # ascending

    def at_or_above(values: np.ndarray) -> np.ndarray:  # per candidate threshold: how many values >= it
        ordered = np.sort(values)
        return len(ordered) - np.searchsorted(ordered, candidates, side="left")

    right = at_or_above(present[correct])
    answered = at_or_above(present) + at_or_above(absent)
    precision = np.where(answered > 0, right / np.maximum(answered, 1), 1.0)
    reached = precision >= target_precision
    # The lowest threshold that still reaches the target keeps the most right answers; without one,
    # the most precise threshold (the highest of equals).
    pick = int(np.flatnonzero(reached)[0]) if reached.any() else int(np.flatnonzero(precision == precision.max())[-1])
    t = float(candidates[pick])
    return t, answer_rates(t, present, correct, absent), bool(reached.any())


def write_calibration(index_root: str | os.PathLike[str], calibration: Calibration) -> Path:
    path = Path(index_root) / CALIBRATION_FILE
    atomic_write_bytes(path, (json.dumps(calibration.to_json(), indent=2) + "\n").encode("utf-8"))
    return path


def read_calibration(index_root: str | os.PathLike[str], model_fingerprint: str) -> Calibration:
    """The index's calibration, checked against the model searching it; InputError says what to run."""
    path = Path(index_root) / CALIBRATION_FILE
    if not path.is_file():
        raise InputError(f"{index_root} has no calibrated threshold; run: itr calibrate {index_root} --on DATASET "
                         "(or give --min-score a number)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cal = Calibration(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: unreadable calibration ({exc}); run itr calibrate again") from None
    if cal.model_fingerprint != model_fingerprint:
        raise InputError(f"{path} was fitted for model '{cal.model}' ({cal.model_fingerprint}), not the one searching "
                         f"({model_fingerprint}); run itr calibrate again")
    return cal
