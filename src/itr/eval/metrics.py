"""Retrieval metrics as pure functions of score matrices (or embeddings): no models, no files.

Conventions (also in the README):

- ``scores`` is always ``(n_images, n_texts)``: ``scores[i, t]`` is how well text ``t`` matches image
  ``i`` (higher is better). ``text_image[t]`` is the index of the image that text ``t`` describes.
- Ranks are 1-based. **i2t**: an image's rank is the best rank among its own captions, i.e.
  ``1 + #{captions of other images scoring >= its best own caption}``. **t2i**: a caption's rank is
  the rank of its own image, ``1 + #{other images scoring >= its own image}``.
- **Ties** are exact: two scores tie only when they are equal. They count against the query
  (``tie="pessimistic"``, the default): a wrong item with the same score as the right one ranks
  above it, so models that give many items identical vectors cannot score well by luck of the sort
  order. ``tie="optimistic"`` counts only strictly better wrong items. The reference codes break
  ties by their sort order, so their figures lie between the two: the pair is the *tie band*.
- Scores computed here from embeddings are **deterministic** (``deterministic_scores``): the same two
  vectors give bit-identical scores wherever they sit in the matrix, so identical vectors tie exactly
  and nothing needs a tolerance (a float32 BLAS product differs by ~1e-7 between positions).
- ``R@K`` is the percentage (0-100) of queries whose rank is <= K; RSUM is the sum of R@1/5/10 of
  both directions (0-600). The median rank follows the field's convention (VSE++, SCAN, open_clip:
  ``floor(median(0-based rank)) + 1``, i.e. the 1-based median rounded down: 1.0 where a plain median
  would give 1.5); the mean rank is the plain mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Tie = Literal["pessimistic", "optimistic"]
DEFAULT_KS = (1, 5, 10)


def _check_text_image(n_images: int, n_texts: int, text_image: np.ndarray, *, need_captions: bool) -> np.ndarray:
    text_image = np.asarray(text_image, dtype=np.int64)
    if text_image.shape != (n_texts,):
        raise ValueError(f"text_image must have one entry per text ({n_texts}), got shape {text_image.shape}")
    if n_texts and (text_image.min() < 0 or text_image.max() >= n_images):
        raise ValueError(f"text_image values must be image indices in [0, {n_images})")
    if need_captions:
        counts = np.bincount(text_image, minlength=n_images)
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0)
            raise ValueError(f"{len(missing)} image(s) have no caption (first: index {missing[0]}); "
                             "i2t needs at least one per image")
    return text_image


def _check(scores: np.ndarray, text_image: np.ndarray, *, need_captions: bool) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_images, n_texts) matrix, got shape {scores.shape}")
    return scores, _check_text_image(*scores.shape, text_image, need_captions=need_captions)


def deterministic_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` as float32 scores that depend only on the two vectors of each pair.

    A float32 BLAS product rounds the same pair differently depending on where its row falls in a
    kernel block (by ~1e-7), so identical vectors would not tie and "tied" would depend on that
    noise. The products of two float32 numbers are exact in float64, their sum in float64 is off by
    ~1e-16, and rounding that to float32 gives the correctly rounded score except when the float64
    sum lies within ~1e-16 of a float32 rounding boundary (about one pair in 10^8 even then, and
    only for pairs that are not identical: identical inputs get identical float64 sums here). About
    3x the time of a float32 product, which is small beside encoding.
    """
    return (np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T).astype(np.float32)


def _counts(other: np.ndarray, own: np.ndarray, exclude: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many wrong items score strictly above the right one, and how many equal it."""
    if np.isnan(other).any():
        raise ValueError("scores contain NaN: ranks would be meaningless")
    greater = (other > own) & ~exclude
    tied = (other == own) & ~exclude
    return greater.sum(axis=axis).astype(np.int64), tied.sum(axis=axis).astype(np.int64)


def _t2i_counts(scores: np.ndarray, text_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores``: (n_images, b) for a block of texts."""
    own_mask = np.zeros(scores.shape, dtype=bool)
    own_mask[text_image, np.arange(scores.shape[1])] = True
    own = scores[text_image, np.arange(scores.shape[1])][None, :]
    return _counts(scores, own, own_mask, axis=0)


def _i2t_counts(scores: np.ndarray, text_image: np.ndarray, first_image: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``scores``: (b, n_texts) for images ``first_image .. first_image + b``; the best own caption counts."""
    return _i2t_counts_of(scores, text_image, first_image + np.arange(scores.shape[0]))


def _i2t_counts_of(scores: np.ndarray, text_image: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_i2t_counts`` for the images ``images`` (rows of ``scores``, in that order)."""
    own_mask = text_image[None, :] == images[:, None]
    best_own = np.where(own_mask, scores, -np.inf).max(axis=1)[:, None]
    return _counts(scores, best_own, own_mask, axis=1)


def _ranks(greater: np.ndarray, tied: np.ndarray, tie: Tie) -> np.ndarray:
    if tie == "pessimistic":
        return 1 + greater + tied
    if tie == "optimistic":
        return 1 + greater
    raise ValueError(f"tie must be 'pessimistic' or 'optimistic', got {tie!r}")


def t2i_ranks(scores: np.ndarray, text_image: np.ndarray, *, tie: Tie = "pessimistic") -> np.ndarray:
    """Rank of each text's own image among all images (``scores`` may be a block of text columns)."""
    scores, text_image = _check(scores, text_image, need_captions=False)
    return _ranks(*_t2i_counts(scores, text_image), tie)


def i2t_ranks(scores: np.ndarray, text_image: np.ndarray, *, tie: Tie = "pessimistic") -> np.ndarray:
    """Rank of each image's best-ranked own caption among all texts.

    Every image must have at least one caption (ValueError otherwise: i2t is undefined for it).
    """
    scores, text_image = _check(scores, text_image, need_captions=True)
    return _ranks(*_i2t_counts(scores, text_image), tie)


@dataclass(frozen=True)
class RankCounts:
    """For each query, wrong items scoring clearly above the right one and wrong items tied with it.

    Both tie rules follow without scoring again: ``1 + greater`` (optimistic), ``1 + greater + tied``.
    """

    i2t_greater: np.ndarray
    i2t_tied: np.ndarray
    t2i_greater: np.ndarray
    t2i_tied: np.ndarray

    def ranks(self, tie: Tie = "pessimistic") -> tuple[np.ndarray, np.ndarray]:
        """``(i2t_ranks, t2i_ranks)`` under ``tie``."""
        return _ranks(self.i2t_greater, self.i2t_tied, tie), _ranks(self.t2i_greater, self.t2i_tied, tie)


def rank_counts_from_scores(scores: np.ndarray, text_image: np.ndarray, *,
                            t2i_scores: np.ndarray | None = None) -> RankCounts:
    """Rank counts both ways from score matrices, compared exactly as given.

    Args:
        scores: ``(n_images, n_texts)``; both directions unless ``t2i_scores`` is given.
        text_image: own image of each text (every image needs a caption).
        t2i_scores: ``(n_texts, n_images)`` (LAVIS's ``score_matrix_t2i``): the t2i ranks come from it,
            and ``scores`` then plays LAVIS's ``score_matrix_i2t``.
    """
    scores, text_image = _check(scores, text_image, need_captions=True)
    i2t = _i2t_counts(scores, text_image)
    if t2i_scores is None:
        t2i = _t2i_counts(scores, text_image)
    else:
        t2i_scores = np.asarray(t2i_scores)
        if t2i_scores.shape != scores.shape[::-1]:
            raise ValueError(f"t2i_scores must be (n_texts, n_images) = {scores.shape[::-1]}, got {t2i_scores.shape}")
        t2i = _t2i_counts(t2i_scores.T, text_image)
    return RankCounts(*i2t, *t2i)


def rank_counts_from_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, *,
                                chunk: int = 2048, i2t_images: np.ndarray | None = None) -> RankCounts:
    """Rank counts both ways for dot-product scores, computed in blocks to bound memory.

    COCO 5K has 25k captions: the full float32 score matrix is 500 MB, and the boolean work arrays
    would double it, so rows are processed ``chunk`` at a time. Results equal the full-matrix ones.
    """
    image_emb = np.asarray(image_emb, dtype=np.float32)
    text_emb = np.asarray(text_emb, dtype=np.float32)
    text_image = _check_text_image(len(image_emb), len(text_emb), text_image, need_captions=i2t_images is None)
    t2i = [_t2i_counts(deterministic_scores(image_emb, text_emb[s : s + chunk]), text_image[s : s + chunk])
           for s in range(0, len(text_emb), chunk)]
    if i2t_images is None:
        i2t = [_i2t_counts(deterministic_scores(image_emb[s : s + chunk], text_emb), text_image, s)
               for s in range(0, len(image_emb), chunk)]
    else:
        # Only these images are i2t queries (the others are distractors: gallery only, no caption).
        i2t_images = np.asarray(i2t_images, dtype=np.int64)
        if not np.isin(i2t_images, text_image).all():
            raise ValueError("every i2t query image needs at least one caption")
        i2t = [_i2t_counts_of(deterministic_scores(image_emb[i2t_images[s : s + chunk]], text_emb), text_image,
                              i2t_images[s : s + chunk]) for s in range(0, len(i2t_images), chunk)]

    def cat(parts: list[tuple[np.ndarray, np.ndarray]], i: int) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, dtype=np.int64)

    return RankCounts(cat(i2t, 0), cat(i2t, 1), cat(t2i, 0), cat(t2i, 1))


def ranks_from_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, *,
                          tie: Tie = "pessimistic", chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``(i2t_ranks, t2i_ranks)`` for dot-product scores (see ``rank_counts_from_embeddings``)."""
    return rank_counts_from_embeddings(image_emb, text_emb, text_image, chunk=chunk).ranks(tie)


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
    median = median_rank(ranks)
    out["median_rank"] = median if np.isfinite(median) else None
    out["mean_rank"] = float(np.mean(ranks)) if np.isfinite(ranks).all() else None
    return out


def median_rank(ranks: np.ndarray) -> float:
    """The field's median rank of 1-based ranks: ``floor(median(rank - 1)) + 1`` (VSE++ ``medr``,
    open_clip ``median_rank``), so ranks 1 and 2 give 1.0, not 1.5. ``inf`` if it cannot be known."""
    return float(np.floor(np.median(np.asarray(ranks, dtype=np.float64) - 1.0)) + 1.0)


def ranks_from_topk(ids: np.ndarray, text_image: np.ndarray, direction: Literal["i2t", "t2i"], *,
                    query_images: np.ndarray | None = None) -> np.ndarray:
    """Ranks from an index's top-k result lists (for approximate indexes, which never score everything).

    Args:
        ids: ``(n_queries, depth)`` result rows, best first (text rows for i2t, image rows for t2i);
            negative ids (padding) never match.
        text_image: own image of each text.
        direction: ``i2t`` (queries are images) or ``t2i`` (queries are texts).
        query_images: i2t: the image each result row is for (default: row i is image i).

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
        queries = np.arange(len(ids)) if query_images is None else np.asarray(query_images, dtype=np.int64)
        hits = (ids >= 0) & (text_image[np.clip(ids, 0, None)] == queries[:, None])
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
