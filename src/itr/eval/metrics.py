"""Retrieval metrics as pure functions of score matrices (or embeddings): no models, no files.

Conventions (also in the README):

- ``scores`` is always ``(n_images, n_texts)``: ``scores[i, t]`` is how well text ``t`` matches image
  ``i`` (higher is better). ``text_image[t]`` is the index of the image that text ``t`` describes.
- Ranks are 1-based. **i2t**: an image's rank is the best rank among its own captions, i.e.
  ``1 + #{captions of other images scoring >= its best own caption}``. **t2i**: a caption's rank is
  the rank of its own image, ``1 + #{other images scoring >= its own image}``.
- **Ties** count against the query (``tie="pessimistic"``, the default): a wrong item with the same
  score as the right one (within ``TIE_TOLERANCE``) ranks above it. Models that give many items identical vectors
  therefore cannot score well by luck of the sort order. ``tie="optimistic"`` (only strictly better
  wrong items count) is available for comparison with code that sorts and takes the first position.
- ``R@K`` is the percentage (0-100) of queries whose rank is <= K; RSUM is the sum of R@1/5/10 of
  both directions (0-600). Median and mean rank are over the same ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

Tie = Literal["pessimistic", "optimistic"]
DEFAULT_KS = (1, 5, 10)


def _check(scores: np.ndarray, text_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    text_image = np.asarray(text_image, dtype=np.int64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_images, n_texts) matrix, got shape {scores.shape}")
    n_images, n_texts = scores.shape
    if text_image.shape != (n_texts,):
        raise ValueError(f"text_image must have one entry per text ({n_texts}), got shape {text_image.shape}")
    if n_texts and (text_image.min() < 0 or text_image.max() >= n_images):
        raise ValueError(f"text_image values must be image indices in [0, {n_images})")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: ranks would be meaningless")
    return scores, text_image


TIE_TOLERANCE = 1e-6
"""Scores closer than this (relative to the score, at least absolute) are ties. Identical float32
vectors do not always get bit-identical dot products: BLAS kernels round differently depending on
where a row falls in a block, by ~1e-7. Without a tolerance, "tied" would depend on that noise."""


def _beats(other: np.ndarray, own: np.ndarray, tie: Tie) -> np.ndarray:
    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(own))
    if tie == "pessimistic":
        return other >= own - tol
    if tie == "optimistic":
        return other > own + tol
    raise ValueError(f"tie must be 'pessimistic' or 'optimistic', got {tie!r}")


def t2i_ranks(scores: np.ndarray, text_image: np.ndarray, *, tie: Tie = "pessimistic") -> np.ndarray:
    """Rank of each text's own image among all images (``scores`` may be a block of text columns)."""
    scores, text_image = _check(scores, text_image)
    cols = np.arange(scores.shape[1])
    own = scores[text_image, cols]  # (n_texts,)
    beats = _beats(scores, own[None, :], tie)
    beats[text_image, cols] = False  # the own image never counts against itself
    return 1 + beats.sum(axis=0).astype(np.int64)


def i2t_ranks(scores: np.ndarray, text_image: np.ndarray, *, tie: Tie = "pessimistic") -> np.ndarray:
    """Rank of each image's best-ranked own caption among all texts.

    Every image must have at least one caption (ValueError otherwise: i2t is undefined for it).
    """
    scores, text_image = _check(scores, text_image)
    n_images, n_texts = scores.shape
    counts = np.bincount(text_image, minlength=n_images)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(f"{len(missing)} image(s) have no caption (first: index {missing[0]}); "
                         "i2t needs at least one per image")
    own = np.zeros((n_images, n_texts), dtype=bool)
    own[text_image, np.arange(n_texts)] = True
    best_own = np.where(own, scores, -np.inf).max(axis=1)  # (n_images,)
    beats = _beats(scores, best_own[:, None], tie) & ~own
    return 1 + beats.sum(axis=1).astype(np.int64)


def ranks_from_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, *,
                          tie: Tie = "pessimistic", chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``(i2t_ranks, t2i_ranks)`` for dot-product scores, computed in blocks to bound memory.

    COCO 5K has 25k captions: the full float32 score matrix is 500 MB, and the boolean work arrays
    would double it, so rows are processed ``chunk`` at a time. Results equal the full-matrix ones.
    """
    image_emb = np.asarray(image_emb, dtype=np.float32)
    text_emb = np.asarray(text_emb, dtype=np.float32)
    text_image = np.asarray(text_image, dtype=np.int64)
    n_images, n_texts = len(image_emb), len(text_emb)
    if text_image.shape != (n_texts,):
        raise ValueError(f"text_image must have one entry per text ({n_texts}), got shape {text_image.shape}")
    if n_texts and (text_image.min() < 0 or text_image.max() >= n_images):
        raise ValueError(f"text_image values must be image indices in [0, {n_images})")
    counts = np.bincount(text_image, minlength=n_images)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} image(s) have no caption; i2t needs at least one per image")

    t2i = np.empty(n_texts, dtype=np.int64)
    for start in range(0, n_texts, chunk):
        block = text_emb[start : start + chunk]
        s = image_emb @ block.T  # (n_images, b)
        t2i[start : start + len(block)] = t2i_ranks(s, text_image[start : start + len(block)], tie=tie)

    i2t = np.empty(n_images, dtype=np.int64)
    order = np.argsort(text_image, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for start in range(0, n_images, chunk):
        stop = min(start + chunk, n_images)
        s = image_emb[start:stop] @ text_emb.T  # (b, n_texts)
        if np.isnan(s).any():
            raise ValueError("scores contain NaN: ranks would be meaningless")
        best_own = np.empty(stop - start, dtype=np.float32)
        for row, i in enumerate(range(start, stop)):
            best_own[row] = s[row, order[bounds[i] : bounds[i + 1]]].max()
        beats = _beats(s, best_own[:, None], tie)
        for row, i in enumerate(range(start, stop)):
            beats[row, order[bounds[i] : bounds[i + 1]]] = False
        i2t[start:stop] = 1 + beats.sum(axis=1)
    return i2t, t2i


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Percentage (0-100) of ranks that are <= k."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no ranks: nothing was evaluated")
    return float(100.0 * np.mean(ranks <= k))


def summarize(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float | None]:
    """``{"R@1", "R@5", "R@10", "median_rank", "mean_rank"}`` for one direction.

    Ranks from a truncated result list may be ``inf`` (not found within the depth searched): recall
    is still exact; median/mean rank are None when they cannot be known.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float | None] = {f"R@{k}": recall_at_k(ranks, k) for k in ks}
    median = float(np.median(ranks))
    out["median_rank"] = median if np.isfinite(median) else None
    out["mean_rank"] = float(np.mean(ranks)) if np.isfinite(ranks).all() else None
    return out


def ranks_from_topk(ids: np.ndarray, text_image: np.ndarray, direction: Literal["i2t", "t2i"]) -> np.ndarray:
    """Ranks from an index's top-k result lists (for approximate indexes, which never score everything).

    Args:
        ids: ``(n_queries, depth)`` result rows, best first (text rows for i2t, image rows for t2i);
            negative ids (padding) never match.
        text_image: own image of each text.
        direction: ``i2t`` (queries are images) or ``t2i`` (queries are texts).

    Returns:
        float ranks, ``inf`` where the right item is not within ``depth`` (the order of the index's
        results decides ties).
    """
    ids = np.asarray(ids, dtype=np.int64)
    text_image = np.asarray(text_image, dtype=np.int64)
    if direction == "t2i":
        if len(ids) != len(text_image):
            raise ValueError(f"t2i needs one result row per text ({len(text_image)}), got {len(ids)}")
        hits = ids == text_image[:, None]
    elif direction == "i2t":
        hits = (ids >= 0) & (text_image[np.clip(ids, 0, None)] == np.arange(len(ids))[:, None])
    else:
        raise ValueError(f"direction must be 'i2t' or 't2i', got {direction!r}")
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, np.inf)


def rsum(i2t: dict[str, float | None], t2i: dict[str, float | None], ks: Sequence[int] = DEFAULT_KS) -> float:
    """Sum of R@K over both directions (with the default K = 1, 5, 10: 0-600)."""
    return float(sum((i2t[f"R@{k}"] or 0.0) + (t2i[f"R@{k}"] or 0.0) for k in ks))


def recall_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """R@1..R@max_k (percent), for recall-vs-K plots."""
    ranks = np.asarray(ranks)
    return np.array([recall_at_k(ranks, k) for k in range(1, max_k + 1)])


def mean_rank_variance(ranks: np.ndarray) -> float:
    """Mean Rank Variance across languages (MRV; Nie et al., 2024, "1-to-K contrastive learning").

    Args:
        ranks: ``(n_languages, n_instances)``; column j holds the rank of the correct item for the
            same instance queried (or retrieved) in each language.

    Returns:
        ``mean_j var_l ranks[l, j]`` with the population variance (0 when every language ranks every
        instance the same; lower is more consistent).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 2 or ranks.shape[0] < 2:
        raise ValueError(f"MRV needs ranks of shape (n_languages >= 2, n_instances), got {ranks.shape}")
    if ranks.shape[1] == 0:
        raise ValueError("MRV needs at least one instance present in every language")
    return float(ranks.var(axis=0).mean())


def tied_fraction(optimistic: np.ndarray, pessimistic: np.ndarray) -> float:
    """Percentage of queries whose rank depends on the tie rule (the right item ties a wrong one)."""
    return float(100.0 * np.mean(np.asarray(optimistic) != np.asarray(pessimistic)))
