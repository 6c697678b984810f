"""The training-free sparse baseline with the real built-in model, served by the inverted index."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import require_emoji_data

from itr.encoders.builtin import BuiltinConseEncoder, ConseConfig
from itr.sparse import SparseIndex
from itr.sparse.lexical import BuiltinLexicalEncoder

pytestmark = pytest.mark.builtin


@pytest.fixture(scope="module")
def lexical() -> BuiltinLexicalEncoder:
    return BuiltinLexicalEncoder(BuiltinConseEncoder("builtin:conse", ConseConfig()))


def test_text_terms_drop_function_words_and_use_idf(lexical: BuiltinLexicalEncoder) -> None:
    v = lexical.encode_texts(["a guitar on the beach"])
    terms = {lexical.vocab[t] for t in v.indices}
    assert terms == {"guitar", "beach"}
    lexical.fit_idf(["a guitar", "a guitar and a drum", "the beach"])
    w = dict(zip((lexical.vocab[t] for t in v.indices), v.data, strict=True))
    w2 = lexical.encode_texts(["a guitar on the beach"])
    w2 = dict(zip((lexical.vocab[t] for t in w2.indices), w2.data, strict=True))
    assert w2["beach"] > w2["guitar"]  # rarer in the collection -> higher weight
    assert w["beach"] == w["guitar"]  # before fit_idf: uniform
    lexical.idf = np.ones(lexical.vocab_size, dtype=np.float32)


def test_images_become_class_terms_and_are_found_by_words(lexical: BuiltinLexicalEncoder) -> None:
    require_emoji_data()
    from itr.datasets.emoji import EmojiRenderer
    from itr.images import to_rgb

    r = EmojiRenderer()
    chars = ["🎸", "🦋", "⌚", "🚲"]
    pixels = np.stack([lexical.base.preprocess_image(to_rgb(r.render(c))) for c in chars])
    docs = lexical.encode_pixels(pixels)
    assert docs.shape == (4, lexical.vocab_size) and docs.nnz > 4
    index = SparseIndex.build(docs, lexical.vocab_size)
    ids, _ = index.search(lexical.encode_texts(["a guitar", "a butterfly", "a bicycle"]), k=1)
    assert ids[:, 0].tolist() == [0, 1, 3]
    why = lexical.explain(lexical.encode_texts(["a guitar"]), docs[0])
    assert why and why[0][0] == "guitar" and why[0][1] > 0
