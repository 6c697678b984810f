"""White-box PGD through the real built-in model: gradients reach the pixels, the budget holds, and
recall falls under attack while a zero budget changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import require_emoji_data

from itr.encoders import load_encoder
from itr.eval import EvalOptions, load_eval_dataset, run_eval
from itr.eval.attack import pgd_embeddings
from itr.images import load_image

pytestmark = pytest.mark.builtin


def test_pgd_lowers_recall_and_a_zero_budget_does_not(tmp_path: Path) -> None:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    jsonl = build_emoji_dataset(tmp_path / "emoji", lang="en", limit=8)
    ds = load_eval_dataset(f"jsonl:{jsonl}")
    encoder = load_encoder("builtin")
    [report] = run_eval(ds, encoder, options=EvalOptions(latency_queries=2,
                                                         perturb=("pgd@eps=0,steps=0", "pgd@eps=16,steps=2,step=8")))
    none, strong = report["perturbations"]["pgd@eps=0,steps=0"], report["perturbations"]["pgd@eps=16,steps=2,step=8"]
    assert none["rsum_drop"] == pytest.approx(0.0, abs=1e-6)
    assert strong["rsum_drop"] > 100 and strong["i2t"]["R@1"] < report["i2t"]["R@1"]
    # The attacked embeddings move away from the captions they were pushed from.
    texts = encoder.encode_texts([it.captions[next(iter(it.captions))][0] for it in ds.items])
    clean = encoder.encode_images([load_image(p) for p in ds.image_paths[:4]])
    attacked = pgd_embeddings(encoder, list(ds.image_paths[:4]), texts[:4], eps=16, steps=2, step=8, seed=0)
    assert np.all((attacked * texts[:4]).sum(1) < (clean * texts[:4]).sum(1))
