"""`itr eval`'s metrics against the field's reference code, run for real (CLIP_benchmark 1.6.2's
``zeroshot_retrieval``: ``recall_at_k``/``batchify`` and its whole ``evaluate()``), on matrices with no
ties, near ties (1e-6 apart, which a tolerance would merge), and 1, 5 or 1-7 captions per image.

Agreement is exact: the number of hits is the same for every query set and K. With exact ties, the
reference's figure (its ``torch.topk`` order decides) lies inside ITR's tie band. LAVIS's two-matrix
rule and the VSE++/open_clip median rank are checked against an independent argsort implementation
of what those codes compute (they are not installable here: LAVIS pulls a training stack).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_retrieval  # installed by `make test` (Makefile: --no-deps)

from itr.eval import metrics
from itr.eval.runner import evaluate_embeddings, evaluate_scores
from itr.testing import random_unit_vectors

KS = (1, 5, 10)


def _text_image(kind: str, n_images: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "one":
        return np.arange(n_images)
    if kind == "five":
        return np.repeat(np.arange(n_images), 5)
    counts = rng.integers(1, 8, size=n_images)  # 1-7 captions, as COCO's 5-7 and worse
    text_image = np.repeat(np.arange(n_images), counts)
    return text_image[rng.permutation(len(text_image))]  # captions in no particular order


def _matrix(kind: str, n_images: int, text_image: np.ndarray, rng: np.random.Generator, dtype: type) -> np.ndarray:
    """(n_images, n_texts) scores: related pairs score higher, so recall is neither 0 nor 100."""
    scores = rng.normal(size=(n_images, len(text_image)))
    scores[text_image, np.arange(len(text_image))] += 1.5
    scores = scores.astype(dtype)
    if kind == "near-ties":
        # Every score gets a twin 1e-6 above it (relative) somewhere in its row: distinct values that
        # a 1e-6 tie tolerance would have merged, demoting correct hits.
        cols = rng.permutation(len(text_image))
        half = len(cols) // 2
        scores[:, cols[half:2 * half]] = (scores[:, cols[:half]] * (1 + 1e-6)).astype(dtype)
    return scores


def _reference(scores: np.ndarray, text_image: np.ndarray, batch_size: int) -> dict[str, dict[int, float]]:
    """CLIP_benchmark's recall, as its evaluate() computes it from the (n_texts, n_images) matrix."""
    s = torch.from_numpy(np.ascontiguousarray(scores.T))
    positive = torch.zeros_like(s, dtype=torch.bool)
    positive[torch.arange(len(s)), torch.from_numpy(text_image)] = True
    out: dict[str, dict[int, float]] = {"t2i": {}, "i2t": {}}
    for k in KS:
        if k > s.shape[1] or k > s.shape[0]:
            continue
        out["t2i"][k] = (zeroshot_retrieval.batchify(zeroshot_retrieval.recall_at_k, s, positive, batch_size, "cpu",
                                                      k=k) > 0).float().mean().item()
        out["i2t"][k] = (zeroshot_retrieval.batchify(zeroshot_retrieval.recall_at_k, s.T, positive.T, batch_size,
                                                      "cpu", k=k) > 0).float().mean().item()
    return out


def _assert_same_hits(ours: dict, ref: dict[str, dict[int, float]], n: dict[str, int]) -> None:
    for direction, by_k in ref.items():
        for k, value in by_k.items():
            # Same number of hits: the reference's float32 mean, times the queries, is an integer.
            assert round(value * n[direction]) == round(ours[direction][f"R@{k}"] / 100 * n[direction]), (direction, k)
            assert abs(value * 100 - ours[direction][f"R@{k}"]) < 1e-4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("captions", ["one", "five", "variable"])
@pytest.mark.parametrize("kind", ["random", "near-ties"])
def test_recall_equals_clip_benchmark(kind: str, captions: str, dtype: type) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{captions}/{dtype.__name__}".encode()))
    n_images = 60
    text_image = _text_image(captions, n_images, rng)
    scores = _matrix(kind, n_images, text_image, rng, dtype)
    ours = evaluate_scores(scores, text_image)
    assert ours["tied_queries_percent"] == {"i2t": 0.0, "t2i": 0.0}  # near ties are not ties
    ref = _reference(scores, text_image, batch_size=16)
    _assert_same_hits(ours, ref, {"i2t": n_images, "t2i": len(text_image)})


def test_exact_ties_put_the_reference_inside_the_band() -> None:
    rng = np.random.default_rng(11)
    text_image = np.repeat(np.arange(40), 5)
    scores = np.round(_matrix("random", 40, text_image, rng, np.float32), 1)  # one decimal: many ties
    ours = evaluate_scores(scores, text_image)
    assert ours["tied_queries_percent"]["t2i"] > 10
    ref = _reference(scores, text_image, batch_size=8)
    band = ours["tie_band"]
    for direction in ("i2t", "t2i"):
        for k, value in ref[direction].items():
            assert band["pessimistic"][direction][f"R@{k}"] - 1e-4 <= 100 * value
            assert 100 * value <= band["optimistic"][direction][f"R@{k}"] + 1e-4


class _Embeddings(torch.nn.Module):
    """A "model" whose images and tokens are row numbers into fixed embeddings."""

    def __init__(self, images: np.ndarray, texts: np.ndarray) -> None:
        super().__init__()
        self.images, self.texts = torch.from_numpy(images), torch.from_numpy(texts)

    def encode_image(self, rows: torch.Tensor) -> torch.Tensor:
        return self.images[rows]

    def encode_text(self, rows: torch.Tensor) -> torch.Tensor:
        return self.texts[rows]


def test_whole_evaluate_equals_evaluate_embeddings() -> None:
    """CLIP_benchmark's full evaluate(): its own batching, normalisation and score matrix."""
    rng = np.random.default_rng(5)
    n_images = 50
    text_image = np.sort(_text_image("variable", n_images, rng))  # its loader yields captions per image
    images = random_unit_vectors(n_images, 32, seed=1)
    texts = images[text_image] + 0.9 * random_unit_vectors(len(text_image), 32, seed=2)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    texts = texts.astype(np.float32)
    starts = np.searchsorted(text_image, np.arange(n_images))
    ends = np.searchsorted(text_image, np.arange(n_images), side="right")
    caption_rows = [list(range(a, b)) for a, b in zip(starts, ends, strict=True)]
    batches = [(torch.arange(s, min(s + 8, n_images)), caption_rows[s : s + 8]) for s in range(0, n_images, 8)]
    ref = zeroshot_retrieval.evaluate(_Embeddings(images, texts), batches, lambda rows: torch.tensor(rows),
                                      "cpu", amp=False, recall_k_list=list(KS))
    ours = evaluate_embeddings(images, texts, text_image)
    for k in KS:
        assert round(ref[f"image_retrieval_recall@{k}"] * len(texts)) == round(ours["t2i"][f"R@{k}"] / 100 * len(texts))
        assert round(ref[f"text_retrieval_recall@{k}"] * n_images) == round(ours["i2t"][f"R@{k}"] / 100 * n_images)


def _argsort_ranks(score_i2t: np.ndarray, score_t2i: np.ndarray, text_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks the way LAVIS's and SCAN's evaluation loops find them: sort each query's row
    descending, take the position of the (best) right item."""
    i2t = np.array([min(int(np.flatnonzero(np.argsort(-row, kind="stable") == t)[0]) for t in np.flatnonzero(text_image == i))
                    for i, row in enumerate(score_i2t)])
    t2i = np.array([int(np.flatnonzero(np.argsort(-row, kind="stable") == text_image[t])[0])
                    for t, row in enumerate(score_t2i)])
    return i2t, t2i


def test_two_matrices_and_median_rank_as_lavis_and_vsepp_compute_them() -> None:
    rng = np.random.default_rng(8)
    text_image = _text_image("variable", 40, rng)
    i2t_scores = _matrix("random", 40, text_image, rng, np.float64)
    t2i_scores = _matrix("random", 40, text_image, rng, np.float64).T  # a re-ranker's other direction
    ours = evaluate_scores(i2t_scores, text_image, t2i_scores=t2i_scores)
    ref_i2t, ref_t2i = _argsort_ranks(i2t_scores, t2i_scores, text_image)
    for direction, ranks in (("i2t", ref_i2t), ("t2i", ref_t2i)):
        for k in KS:
            assert ours[direction][f"R@{k}"] == pytest.approx(100.0 * np.mean(ranks < k))
        assert ours[direction]["median_rank"] == np.floor(np.median(ranks)) + 1  # VSE++ medr, open_clip
        assert ours[direction]["mean_rank"] == pytest.approx(ranks.mean() + 1)
    # One matrix for both directions would have given different t2i figures.
    assert evaluate_scores(i2t_scores, text_image)["t2i"] != ours["t2i"]
    assert metrics.median_rank(ref_t2i + 1) == ours["t2i"]["median_rank"]
