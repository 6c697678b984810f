"""Evaluating a re-ranked model the way LAVIS does: one score matrix per direction.

Each image's top ``depth`` captions by the dual encoder are re-scored by the re-ranker (i2t), and
each caption's top ``depth`` images (t2i); the score of a re-scored pair is the re-ranker's score
plus the dense similarity (LAVIS adds the ITM output to the similarity), every other pair gets
-100, and the two matrices are ranked each in its own direction (``evaluate_scores(i2t,
text_image, t2i_scores=t2i)``). LAVIS uses k_test 128 for Flickr30K and 256 for COCO. ITR's
re-rankers return the matching head's probability, not its logit, so the sum weights the dense
score a little more than LAVIS does; the ranking inside the top ``depth`` is the re-ranker's
whenever its scores differ by more than the dense ones do.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from .._utils import ProgressFn
from ..images import load_image
from .metrics import deterministic_scores

UNSCORED = -100.0
_CACHED_SIDE = 512  # images are kept at most this large between re-ranker calls (processors resize to <= 384)


def reranked_matrices(image_paths: list[str], texts: list[str], image_emb: np.ndarray, text_emb: np.ndarray,
                      reranker: Any, depth: int, *, progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(i2t, t2i)``: (n_images, n_texts) and (n_texts, n_images) LAVIS-style score matrices."""
    @lru_cache(maxsize=512)
    def image(i: int) -> Image.Image:
        img = load_image(image_paths[i], exif_transpose=False)
        img.thumbnail((_CACHED_SIDE, _CACHED_SIDE))
        return img

    dense = deterministic_scores(image_emb, text_emb)  # (n_images, n_texts)
    n_img, n_txt = dense.shape
    i2t = np.full((n_img, n_txt), UNSCORED, dtype=np.float32)
    t2i = np.full((n_txt, n_img), UNSCORED, dtype=np.float32)
    total, done = n_img + n_txt, 0
    for i in range(n_img):
        top = np.argsort(-dense[i], kind="stable")[: min(depth, n_txt)]
        i2t[i, top] = reranker.score_pairs([image(i)] * len(top), [texts[t] for t in top]) + dense[i, top]
        done += 1
        if progress:
            progress(done, total)
    for t in range(n_txt):
        top = np.argsort(-dense[:, t], kind="stable")[: min(depth, n_img)]
        t2i[t, top] = reranker.score_pairs([image(int(i)) for i in top], [texts[t]] * len(top)) + dense[top, t]
        done += 1
        if progress:
            progress(done, total)
    return i2t, t2i


def rerank_report(encoded: Any, reranker: Any, depth: int, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """R@K both ways of the re-ranked model (first language), and its cost."""
    from .runner import evaluate_scores

    ds = encoded.dataset
    table = ds.texts()
    first = table.lang == ds.languages[0]
    texts = [t for t, keep in zip(table.texts, first, strict=True) if keep]
    start = time.perf_counter()
    i2t, t2i = reranked_matrices(list(ds.image_paths), texts, encoded.image_emb, encoded.text_emb[first], reranker,
                                 depth, progress=progress)
    seconds = time.perf_counter() - start
    result = evaluate_scores(i2t, table.image[first], t2i_scores=t2i)
    queries = len(ds.items) + len(texts)
    return {"reranker": reranker.spec, "reranker_fingerprint": reranker.fingerprint, "depth": depth,
            "protocol": "lavis", "i2t": result["i2t"], "t2i": result["t2i"], "rsum": result["rsum"],
            "seconds": seconds, "ms_per_query": 1000 * seconds / queries if queries else None}
