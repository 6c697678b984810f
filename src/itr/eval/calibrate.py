"""Fitting the "no good match" threshold (``itr.calibration``) on a labelled dataset, and measuring
it: text queries against the dataset's images, each asked with its image present and left out."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._utils import ProgressFn
from ..calibration import Calibration, answer_rates, fit_threshold, top1_scores
from ..encoders.base import Encoder
from .datasets import EvalDataset
from .metrics import deterministic_scores


def query_scores(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, *,
                 chunk: int = 2048) -> tuple[np.ndarray, ...]:
    """``(present, correct, absent)`` top-1 scores of every text query (``calibration.top1_scores``),
    ``chunk`` texts at a time (MSCOCO's full score matrix would be 500 MB, twice over)."""
    text_image = np.asarray(text_image, dtype=np.int64)
    parts = [top1_scores(deterministic_scores(image_emb, text_emb[s : s + chunk]), text_image[s : s + chunk])
             for s in range(0, len(text_emb), chunk)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def calibrate(dataset: EvalDataset, encoder: Encoder, *, target_precision: float = 0.9, options: Any = None,
              progress: ProgressFn | None = None) -> Calibration:
    """Fit the threshold on ``dataset`` (use a validation split) with ``encoder``."""
    from .runner import encode_dataset

    encoded = encode_dataset(dataset, encoder, options, progress=progress)
    present, correct, absent = query_scores(encoded.image_emb, encoded.text_emb, encoded.dataset.texts().image)
    threshold, rates, reached = fit_threshold(present, correct, absent, target_precision)
    return Calibration(threshold=round(threshold, 6), target_precision=target_precision,
                       precision=round(rates["answer_precision"], 4), coverage=round(rates["coverage"], 4),
                       queries=len(present), model_fingerprint=encoder.fingerprint, model=encoder.spec,
                       dataset=f"{dataset.name} ({dataset.split or 'all'})", reached_target=reached)


def no_match_report(calibration: Calibration, image_emb: np.ndarray, text_emb: np.ndarray,
                    text_image: np.ndarray) -> dict[str, Any]:
    """How the threshold does on other queries (the test split): answer precision and coverage, and
    the precision/recall of "no good match" on queries whose image was left out of the gallery."""
    rates = answer_rates(calibration.threshold, *query_scores(image_emb, text_emb, text_image))
    return {"threshold": calibration.threshold, "target_precision": calibration.target_precision,
            "fitted_on": calibration.dataset, "fit_precision": calibration.precision,
            "reached_target": calibration.reached_target, **{k: round(v, 4) for k, v in rates.items()}}
