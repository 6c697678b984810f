"""Retrieval metrics against answers worked out by hand (see the comments next to each matrix)."""

from __future__ import annotations

import numpy as np
import pytest

from itr.eval import metrics
from itr.eval.runner import evaluate_embeddings, evaluate_scores
from itr.testing import random_unit_vectors

# Two images, five captions each: texts 0-4 describe image 0, texts 5-9 image 1.
FIVE_EACH = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
SCORES = np.array([
    # t0    t1   t2   t3   t4   t5   t6    t7   t8   t9
    [0.90, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95, 0.0, 0.0, 0.0],  # image 0
    [0.80, 0.8, 0.8, 0.8, 0.8, 0.8, 0.10, 0.1, 0.1, 0.1],  # image 1
])


def test_i2t_best_own_caption_and_pessimistic_ties() -> None:
    # image 0: best own caption t0 (0.90); only t6 (0.95) of image 1 is above it -> rank 2.
    # image 1: best own caption t5 (0.80); t0-t4 of image 0 tie at 0.80 -> pessimistic rank 6.
    assert metrics.i2t_ranks(SCORES, FIVE_EACH).tolist() == [2, 6]
    # Optimistic: only strictly better wrong captions count -> image 1 ranks first.
    assert metrics.i2t_ranks(SCORES, FIVE_EACH, tie="optimistic").tolist() == [2, 1]


def test_t2i_rank_of_own_image() -> None:
    # Each text compares its own image's score with the other image's score (column-wise):
    # t0 .9>.8 ->1; t1-t4 own .1-.4 < .8 -> 2; t5 own .8 > .5 -> 1; t6 own .1 < .95 -> 2; t7-t9 .1 > 0 -> 1.
    assert metrics.t2i_ranks(SCORES, FIVE_EACH).tolist() == [1, 2, 2, 2, 2, 1, 2, 1, 1, 1]


def test_t2i_ties_with_three_images() -> None:
    scores = np.array([[0.5, 0.2], [0.5, 0.3], [0.5, 0.3]])  # text 0 -> image 1; text 1 -> image 2
    text_image = np.array([1, 2])
    # text 0: images 0 and 2 tie with its own image 1 -> pessimistic 3, optimistic 1.
    # text 1: image 1 ties with its own image 2 (0.3), image 0 is lower -> pessimistic 2, optimistic 1.
    assert metrics.t2i_ranks(scores, text_image).tolist() == [3, 2]
    assert metrics.t2i_ranks(scores, text_image, tie="optimistic").tolist() == [1, 1]


def test_summaries_and_rsum_by_hand() -> None:
    result = evaluate_scores(SCORES, FIVE_EACH)
    # i2t ranks [2, 6]: R@1 0%, R@5 50%, R@10 100%; median and mean 4.
    assert result["i2t"] == {"R@1": 0.0, "R@5": 50.0, "R@10": 100.0, "median_rank": 4.0, "mean_rank": 4.0}
    # t2i ranks: five 1s and five 2s: R@1 50%, R@5 = R@10 = 100%; mean 1.5; median by the field's
    # convention floor(median(0-based)) + 1 = floor(0.5) + 1 = 1.0 (VSE++/open_clip report 1.0).
    assert result["t2i"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0, "median_rank": 1.0, "mean_rank": 1.5}
    assert result["rsum"] == pytest.approx(0 + 50 + 100 + 50 + 100 + 100)


def test_recall_curve_and_recall_at_k() -> None:
    ranks = np.array([1, 3, 3, 10])
    assert metrics.recall_at_k(ranks, 3) == 75.0
    assert metrics.recall_curve(ranks, 4).tolist() == [25.0, 25.0, 75.0, 75.0]


def test_mean_rank_variance_by_hand() -> None:
    # Three instances in two languages: variances 0, 1 ((1-2)^2+(3-2)^2)/2... here ranks 2 and 4 -> 1, 0.
    ranks = np.array([[1, 2, 3], [1, 4, 3]])
    assert metrics.mean_rank_variance(ranks) == pytest.approx((0 + 1 + 0) / 3)
    # Three languages, one instance, ranks 1, 2, 6: mean 3, variance (4 + 1 + 9) / 3.
    assert metrics.mean_rank_variance(np.array([[1], [2], [6]])) == pytest.approx(14 / 3)
    with pytest.raises(ValueError, match="n_languages >= 2"):
        metrics.mean_rank_variance(np.array([[1, 2, 3]]))


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
def test_chunked_embedding_ranks_equal_full_matrix(tie: metrics.Tie) -> None:
    rng = np.random.default_rng(3)
    images = random_unit_vectors(23, 8, seed=1)
    images[5] = images[4]  # identical image vectors: exact ties in both directions
    images[9] = images[4]
    text_image = rng.integers(0, 23, size=70)
    text_image[:23] = np.arange(23)  # every image has a caption
    texts = images[text_image] + 0.3 * random_unit_vectors(70, 8, seed=2)
    texts[7] = texts[6]
    scores = metrics.deterministic_scores(images, texts)  # a float32 BLAS product would break the ties
    i2t, t2i = metrics.ranks_from_embeddings(images, texts, text_image, tie=tie, chunk=4)
    assert i2t.tolist() == metrics.i2t_ranks(scores, text_image, tie=tie).tolist()
    assert t2i.tolist() == metrics.t2i_ranks(scores, text_image, tie=tie).tolist()


def test_tied_vectors_are_counted_against_the_query() -> None:
    # Four images with the same vector: pessimistically none can be found at rank 1.
    images = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (4, 1))
    texts = np.array([[1.0, 0.0]] * 4, dtype=np.float32)
    result = evaluate_embeddings(images, texts, np.arange(4))
    assert result["t2i"]["R@1"] == 0.0 and result["t2i"]["median_rank"] == 4.0
    assert result["tied_queries_percent"] == {"i2t": 100.0, "t2i": 100.0}


def test_ranks_from_topk_lists() -> None:
    text_image = np.array([0, 0, 1, 2])
    # t2i: result rows (image ids) per text; the own image at position 2, 1, not found, 1.
    t2i_ids = np.array([[2, 0, 1], [0, 1, 2], [0, 2, -1], [2, 1, 0]])
    assert metrics.ranks_from_topk(t2i_ids, text_image, "t2i").tolist() == [2, 1, np.inf, 1]
    # i2t: result rows (text ids) per image; image 0's captions are texts 0 and 1.
    i2t_ids = np.array([[3, 1, 0], [0, 1, 3], [-1, 0, 1]])
    assert metrics.ranks_from_topk(i2t_ids, text_image, "i2t").tolist() == [2, np.inf, np.inf]
    summary = metrics.summarize(np.array([1.0, np.inf]))
    assert summary["R@1"] == 50.0 and summary["mean_rank"] is None and summary["median_rank"] is None


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        metrics.t2i_ranks(np.array([[np.nan, 1.0]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="no caption"):
        metrics.i2t_ranks(np.ones((2, 2)), np.array([0, 0]))
    with pytest.raises(ValueError, match="one entry per text"):
        metrics.t2i_ranks(np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="image indices"):
        metrics.t2i_ranks(np.ones((2, 2)), np.array([0, 5]))
    with pytest.raises(ValueError, match="tie must be"):
        metrics.t2i_ranks(np.ones((2, 2)), np.array([0, 1]), tie="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing was evaluated"):
        metrics.recall_at_k(np.array([]), 1)


def test_median_rank_follows_the_fields_convention() -> None:
    assert metrics.median_rank(np.array([1, 2])) == 1.0  # a plain median would say 1.5
    assert metrics.median_rank(np.array([1, 2, 3, 4])) == 2.0  # 0-based median 1.5 -> floor 1 -> 2
    assert metrics.median_rank(np.array([3, 5, 9])) == 5.0
    assert metrics.median_rank(np.array([1.0, np.inf, np.inf])) == np.inf


def test_near_ties_are_not_ties() -> None:
    # Float32 scores 1e-6 apart (the case): every reference gives i2t R@1 100 %.
    scores = np.array([[0.36235777, 0.3623568], [0.9320391, 0.93203944]], dtype=np.float32)
    result = evaluate_scores(scores, np.array([0, 1]))
    assert result["i2t"]["R@1"] == 100.0
    assert result["tied_queries_percent"] == {"i2t": 0.0, "t2i": 0.0}
    # The band collapses when nothing ties.
    assert result["tie_band"]["optimistic"] == result["tie_band"]["pessimistic"]


def test_identical_vectors_tie_exactly_wherever_they_sit() -> None:
    # A float32 BLAS product rounds the same pair differently by position (~1e-7); the deterministic
    # scores must not, or identical items would rank by where they sit in the matrix.
    images = random_unit_vectors(1000, 512, seed=4)
    copies = [1, 17, 333, 511, 999]
    images[copies] = images[0]
    texts = random_unit_vectors(300, 512, seed=5)
    scores = metrics.deterministic_scores(images, texts)
    assert scores.dtype == np.float32
    for c in copies:
        assert np.array_equal(scores[c], scores[0])
    np.testing.assert_allclose(scores, images @ texts.T, atol=1e-6)
    # t2i: a text equal to image 0 ties with its five copies, and nothing else is above: rank 6.
    queries = np.concatenate([images[:1], random_unit_vectors(len(images) - 1, 512, seed=6)])
    text_image = np.arange(len(images))
    counts = metrics.rank_counts_from_embeddings(images, queries, text_image, chunk=256)
    assert counts.t2i_tied[0] == 5 and counts.t2i_greater[0] == 0


def test_two_score_matrices_rank_each_direction_from_its_own() -> None:
    # LAVIS's protocol: the i2t matrix ranks images' captions, the (n_texts, n_images) t2i matrix
    # ranks texts' images. Here the i2t matrix is perfect and the t2i matrix is reversed.
    i2t = np.array([[0.9, 0.1], [0.2, 0.8]])
    t2i = np.array([[0.1, 0.9], [0.8, 0.2]])  # text 0 prefers image 1, text 1 image 0
    result = evaluate_scores(i2t, np.array([0, 1]), t2i_scores=t2i)
    assert result["i2t"]["R@1"] == 100.0 and result["t2i"]["R@1"] == 0.0
    assert evaluate_scores(i2t, np.array([0, 1]))["t2i"]["R@1"] == 100.0  # one matrix: both perfect
    with pytest.raises(ValueError, match="n_texts, n_images"):
        evaluate_scores(i2t, np.array([0, 1]), t2i_scores=np.ones((3, 2)))


def test_tie_band_brackets_the_sort_order() -> None:
    # Four identical images: pessimistic t2i R@1 0 %, optimistic 100 %.
    images = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (4, 1))
    band = evaluate_embeddings(images, images.copy(), np.arange(4))["tie_band"]
    assert band["pessimistic"]["t2i"]["R@1"] == 0.0 and band["optimistic"]["t2i"]["R@1"] == 100.0
    assert band["optimistic"]["rsum"] == 600.0
