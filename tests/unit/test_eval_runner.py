"""The evaluation runner and reports, with the ColorEncoder test double (milliseconds, known answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from itr._utils import l2_normalize
from itr.errors import InputError, UnknownNameError
from itr.eval import (
    EncodedDataset,
    EvalDataset,
    EvalItem,
    EvalOptions,
    LoadOptions,
    evaluate_encoded,
    galleries,
    load_eval_dataset,
    metrics,
    run_eval,
)
from itr.eval.report import plot_recall, reports_json, to_markdown, write_json
from itr.testing import ColorEncoder, random_unit_vectors, solid_image

FIXTURES = Path(__file__).parent.parent / "fixtures" / "karpathy"


@pytest.fixture
def flickr(tmp_path: Path) -> EvalDataset:
    for name, color in {"1000344755.jpg": "red", "1000366164.jpg": "green", "1000523639.jpg": "blue"}.items():
        solid_image(tmp_path / name, color)
    return load_eval_dataset(f"karpathy:{FIXTURES / 'dataset_flickr30k.json'}", LoadOptions(images_root=str(tmp_path)))


def test_report_on_karpathy_fixture(flickr: EvalDataset) -> None:
    [report] = run_eval(flickr, ColorEncoder(), options=EvalOptions(latency_queries=5))
    # Every caption names its image's colour, and the three colours are distinct: perfect retrieval.
    assert report["i2t"]["R@1"] == 100.0 and report["t2i"]["R@1"] == 100.0 and report["rsum"] == 600.0
    assert report["i2t"]["median_rank"] == 1.0 and report["t2i"]["mean_rank"] == 1.0
    assert {"dataset", "model", "n_images", "n_texts", "i2t", "t2i", "rsum", "encode_seconds",
            "images_per_second", "model_fingerprint", "preprocessing", "versions", "seed"} <= set(report)
    assert report["n_images"] == 3 and report["n_texts"] == 15 and report["split"] == "test"
    assert not flickr.multilingual and "per_language" not in report
    assert report["model"] == "test:color" and report["index"] == "exact" and report["tie_rule"] == "pessimistic"
    assert report["index_bytes"] == (3 + 15) * 16 * 4
    assert report["latency_ms"]["queries"] == 5 and report["latency_ms"]["p50"] > 0
    assert len(report["recall_curve"]["t2i"]) == 50 and report["versions"]["numpy"] == np.__version__
    json.dumps(report, allow_nan=False)  # serialisable as strict JSON


def test_unreadable_image_needs_skip_flag(flickr: EvalDataset) -> None:
    Path(flickr.items[1].image).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match="1 of 3 images .* could not be read .*--skip-missing"):
        run_eval(flickr, ColorEncoder())
    [report] = run_eval(flickr, ColorEncoder(), options=EvalOptions(skip_missing=True, latency_queries=3))
    assert report["n_images"] == 2 and report["n_texts"] == 10 and report["skipped_images"] == 1
    assert "1000366164.jpg" in report["skipped"][0]


def test_unknown_index_kind_fails_before_encoding(flickr: EvalDataset) -> None:
    enc = ColorEncoder()
    with pytest.raises(UnknownNameError, match="unknown index kind 'annoy'; valid: exact, auto, hnsw"):
        run_eval(flickr, enc, index_kinds=["annoy"])
    assert enc.images_encoded == 0


def test_multilingual_per_language_and_mrv(tmp_path: Path) -> None:
    items = []
    for i, color in enumerate(("red", "green", "blue", "yellow")):
        image = solid_image(tmp_path / f"{color}.png", color)
        # English names the colour; "xx" uses words the encoder does not know (hash features).
        items.append(EvalItem(str(i), str(image), {"en": (f"a {color} thing",), "xx": (f"zorp{i} blah",)}))
    ds = EvalDataset("test:multi", "test", tuple(items), languages=("en", "xx"))
    [report] = run_eval(ds, ColorEncoder(), options=EvalOptions(latency_queries=4))
    en, xx = report["per_language"]["en"], report["per_language"]["xx"]
    assert en["t2i"]["R@1"] == 100.0 and xx["t2i"]["R@1"] < 100.0
    assert report["t2i"]["R@1"] == pytest.approx((en["t2i"]["R@1"] + xx["t2i"]["R@1"]) / 2)
    assert report["languages"] == ["en", "xx"] and report["n_texts"] == 8
    # English ranks are all 1, so each instance's variance over (1, r) is ((r - 1) / 2)^2.
    enc = ColorEncoder()
    scores = enc.encode_images([Image.open(it.image) for it in items]) @ enc.encode_texts(
        [it.captions["xx"][0] for it in items]).T
    r = metrics.t2i_ranks(scores, np.arange(4))
    assert report["mrv"]["t2i"] == pytest.approx(np.mean(((r - 1) / 2) ** 2)) and report["mrv"]["t2i"] > 0
    assert report["mrv"]["t2i_instances"] == 4
    md = to_markdown([report])
    assert "| en |" in md and "MRV" in md


def test_topk_path_for_approximate_kinds(flickr: EvalDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    class Truncated(galleries.ExactGallery):
        """An 'approximate' kind that returns only its top 2: ranks come from result lists."""

        exact = False

        def search(self, queries: np.ndarray, k: int) -> np.ndarray:
            return super().search(queries, min(k, 2))

    monkeypatch.setitem(galleries.GALLERY_KINDS, "top2", Truncated)
    exact, approx = run_eval(flickr, ColorEncoder(), index_kinds=["exact", "top2"],
                             options=EvalOptions(latency_queries=3))
    assert approx["index"] == "top2" and approx["tie_rule"] == "index order"
    assert approx["t2i"]["R@1"] == exact["t2i"]["R@1"] and approx["i2t"]["R@5"] == exact["i2t"]["R@5"]


def test_json_markdown_and_plot_outputs(flickr: EvalDataset, tmp_path: Path) -> None:
    reports = run_eval(flickr, ColorEncoder(), options=EvalOptions(latency_queries=3))
    reports += run_eval(flickr, ColorEncoder(salt="b"), options=EvalOptions(latency_queries=3))
    assert set(reports_json(reports[:1])) >= {"dataset", "i2t"}  # one run: the report itself
    write_json(reports, tmp_path / "r.json")
    assert [r["model_fingerprint"] for r in json.loads((tmp_path / "r.json").read_text())["runs"]] == [
        r["model_fingerprint"] for r in reports]
    md = to_markdown(reports)
    assert md.count("| karpathy:") == 2 and "| 100.0 |" in md and "ties: pessimistic" in md
    plot_recall(reports, tmp_path / "recall.png")
    with Image.open(tmp_path / "recall.png") as im:
        assert im.format == "PNG" and im.size[0] > 600
    with pytest.raises(InputError, match=r"must end in \.png, \.svg, \.pdf"):
        plot_recall(reports, tmp_path / "recall.gif")


def test_faiss_kinds_against_exact() -> None:
    # Precomputed embeddings (the API for any encoder): 300 images, 2 noisy captions each.
    images = random_unit_vectors(300, 32, seed=1)
    text_image = np.repeat(np.arange(300), 2)
    texts = l2_normalize(images[text_image] + 0.15 * random_unit_vectors(600, 32, seed=2))
    items = tuple(EvalItem(str(i), f"{i}.png", {"": ("a", "b")}) for i in range(300))
    encoded = EncodedDataset(EvalDataset("test:vectors", None, items), {"spec": "test", "fingerprint": "x"},
                             images, texts, 1.0, 1.0)
    opts = EvalOptions(latency_queries=5)
    exact, flat, hnsw = (evaluate_encoded(encoded, index_kind=kind, options=opts)
                         for kind in ("exact", "faiss:Flat", "faiss:HNSW16@efSearch=128"))
    # faiss Flat is exact search read off top-k lists: the same recall as the reference.
    for d in ("i2t", "t2i"):
        for k in ("R@1", "R@5", "R@10"):
            assert flat[d][k] == pytest.approx(exact[d][k])
            assert hnsw[d][k] >= exact[d][k] - 5
    assert exact["t2i"]["R@10"] > 50  # a task that is neither trivial nor hopeless
    assert flat["t2i"]["median_rank"] == exact["t2i"]["median_rank"]
    assert hnsw["index"] == "faiss:HNSW16@efSearch=128" and hnsw["index_bytes"] > flat["index_bytes"]
    assert "recall10_vs_exact" not in exact and flat["recall10_vs_exact"] == 1.0
    # the kinds of itr index --index: tuned for recall 0.95 against exact, reported as such
    for kind in ("ivf-flat", "hnsw", "sq8"):
        r = evaluate_encoded(encoded, index_kind=kind, options=opts)
        assert r["index"] == kind and 0.9 <= r["recall10_vs_exact"] <= 1.0
        assert r["t2i"]["R@10"] >= exact["t2i"]["R@10"] - 5
    with pytest.raises(InputError, match="FAISS index 'IVF4096,Flat' could not be built over 300 vectors"):
        evaluate_encoded(encoded, index_kind="faiss:IVF4096,Flat", options=opts)
    with pytest.raises(InputError, match="FAISS index 'Bogus12' could not be built"):
        evaluate_encoded(encoded, index_kind="faiss:Bogus12", options=opts)


class _SizeRecorder(ColorEncoder):
    """Records the size and first pixel of every image handed to preprocessing."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[tuple[int, int], tuple[int, ...]]] = []

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        self.seen.append((image.size, image.getpixel((0, 0))))
        return super().preprocess_image(image)


def test_eval_decodes_as_the_reference_loaders_do(tmp_path: Path) -> None:
    # A 640 x 480 JPEG (COCO's common size) with EXIF orientation 6 (turn 90 degrees), left half red.
    img = Image.new("RGB", (640, 480), (20, 20, 220))
    img.paste((220, 20, 20), (0, 0, 320, 480))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "a.jpg", exif=exif.tobytes(), quality=95)
    (tmp_path / "d.jsonl").write_text('{"image": "a.jpg", "captions": ["red"]}\n')
    ds = load_eval_dataset(f"jsonl:{tmp_path / 'd.jsonl'}")
    ref, fast = _SizeRecorder(), _SizeRecorder()
    run_eval(ds, ref, options=EvalOptions(latency_queries=1))
    run_eval(ds, fast, options=EvalOptions(latency_queries=1, decode="fast"))
    # Reference: every pixel, no EXIF turn, exactly Image.open(p).convert("RGB").
    with Image.open(tmp_path / "a.jpg") as im:
        want = im.convert("RGB")
    assert ref.seen == [(want.size, want.getpixel((0, 0)))] and want.size == (640, 480)
    # Fast (indexing): JPEG draft at a reduced size, turned upright as a viewer shows it.
    (w, h), _ = fast.seen[0]
    assert (w, h) != (640, 480) and h > w
    with pytest.raises(InputError, match="decode must be"):
        run_eval(ds, ColorEncoder(), options=EvalOptions(decode="draft"))  # type: ignore[arg-type]


def test_protocol_tie_band_and_ci_in_the_report(flickr: EvalDataset) -> None:
    [report] = run_eval(flickr, ColorEncoder(), options=EvalOptions(latency_queries=5, protocol="karpathy5",
                                                                    ci_resamples=50))
    assert report["protocol"] == "karpathy5"
    assert set(report["tie_band"]) == {"optimistic", "pessimistic"}
    assert report["tie_band"]["pessimistic"]["rsum"] == pytest.approx(report["rsum"])
    lo, hi = report["ci"]["rsum"]
    assert lo <= report["rsum"] <= hi and report["ci"]["resamples"] == 50
    ranks = report["ranks"][flickr.languages[0]]
    assert len(ranks["i2t"]) == report["n_images"] and len(ranks["t2i"]) == report["n_texts"]
    json.dumps(report, allow_nan=False)  # the ranks and intervals are plain JSON
    with pytest.raises(UnknownNameError, match="valid: itr, clip_benchmark, karpathy5, lavis"):
        run_eval(flickr, ColorEncoder(), options=EvalOptions(protocol="coco"))


def test_failures_list_the_worst_queries_with_a_contact_sheet(tmp_path: Path) -> None:
    from itr.eval.failures import write_failures

    for name, color in {"r.png": "red", "g.png": "green", "b.png": "blue", "y.png": "yellow"}.items():
        solid_image(tmp_path / name, color)
    # "a ripe tomato" names no colour: the ColorEncoder cannot find r.png from it.
    (tmp_path / "d.jsonl").write_text('{"image": "r.png", "captions": ["a ripe tomato"]}\n'
                                      '{"image": "g.png", "captions": ["green"]}\n'
                                      '{"image": "b.png", "captions": ["blue"]}\n'
                                      '{"image": "y.png", "captions": ["yellow"]}\n')
    ds = load_eval_dataset(f"jsonl:{tmp_path / 'd.jsonl'}")
    [report] = run_eval(ds, ColorEncoder(), options=EvalOptions(latency_queries=2, failures=3))
    t2i = report["failures"]["t2i"]
    assert [f["query"] for f in t2i] == ["a ripe tomato"]  # the queries found first are not failures
    assert t2i[0]["rank"] > 1 and t2i[0]["right"].endswith("r.png") and len(t2i[0]["top"]) == 4
    assert t2i[0]["top"][0]["score"] >= t2i[0]["right_score"]
    i2t = report["failures"]["i2t"]
    assert i2t and i2t[0]["image"].endswith("r.png") and i2t[0]["captions"] == ["a ripe tomato"]
    md, png = write_failures(report, tmp_path / "out")
    assert "| a ripe tomato |" in md.read_text() and "![contact sheet](" in md.read_text()
    with Image.open(png) as sheet:
        assert sheet.format == "PNG" and sheet.height >= 100


def test_fg_gallery_with_distractors(tmp_path: Path) -> None:
    """MSCOCO-FG style: captions for the targets, a pool of similar images no caption describes."""
    for name, color in {"t_red.jpg": (220, 20, 20), "t_green.jpg": (20, 200, 20), "t_blue.jpg": (20, 20, 220),
                        "d_red.jpg": (200, 40, 30), "d_blue.jpg": (40, 30, 200), "d_grey.jpg": (128, 128, 128)}.items():
        solid_image(tmp_path / name, color)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"t_red": ["red"], "t_green": ["green"], "t_blue.jpg": ["blue", "a blue square"]}))
    np.save(tmp_path / "pool.npy", np.array(["d_red", "d_blue.jpg", "t_red", "d_grey"]))  # a target listed too
    plain = load_eval_dataset(f"fg:{ann}")
    assert len(plain.items) == 3 and not plain.has_distractors
    ds = load_eval_dataset(f"fg:{ann},{tmp_path / 'pool.npy'}")
    assert len(ds.items) == 6 and ds.query_images.tolist() == [0, 1, 2]
    [report] = run_eval(ds, ColorEncoder(), options=EvalOptions(latency_queries=2, ci_resamples=50, failures=3))
    assert report["n_images"] == 6 and report["n_distractors"] == 3 and report["n_texts"] == 4
    assert len(next(iter(report["ranks"].values()))["i2t"]) == 3  # the three targets are the only i2t queries
    assert all(f["image"].startswith(str(tmp_path / "t_")) for f in report["failures"]["i2t"])
    (tmp_path / "pool.txt").write_text("d_red\nd_blue.jpg\nd_grey\n")
    same = run_eval(load_eval_dataset(f"fg:{ann},{tmp_path / 'pool.txt'}"), ColorEncoder(),
                    options=EvalOptions(latency_queries=2))[0]
    assert same["rsum"] == report["rsum"]
    flat = run_eval(ds, ColorEncoder(), index_kinds=("faiss:Flat",), options=EvalOptions(latency_queries=2))[0]
    assert flat["tie_rule"] == "index order" and 0 <= flat["i2t"]["R@1"] <= 100
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="without pickle"):
        load_eval_dataset(f"fg:{ann},{tmp_path / 'objects.npy'}")


def test_reranked_two_matrix_protocol_with_an_oracle(tmp_path: Path) -> None:
    """A re-ranker that knows the answer fixes every query within its depth, and nothing beyond."""
    from itr.eval.reranked import UNSCORED, reranked_matrices

    colors = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}
    paths = [str(solid_image(tmp_path / f"{c}.png", rgb)) for c, rgb in colors.items()]
    texts = list(colors)

    class Oracle:
        spec, fingerprint = "test:oracle", "o"

        def score_pairs(self, images: list[Image.Image], queries: list[str]) -> np.ndarray:
            return np.array([10.0 if im.getpixel((0, 0)) == colors[q] else 0.0 for im, q in zip(images, queries, strict=True)],
                            dtype=np.float32)

    rng = np.random.default_rng(0)
    image_emb, text_emb = l2_normalize(rng.normal(size=(4, 8))), l2_normalize(rng.normal(size=(4, 8)))
    text_image = np.arange(4)
    i2t, t2i = reranked_matrices(paths, texts, image_emb, text_emb, Oracle(), depth=4)
    from itr.eval import evaluate_scores

    full = evaluate_scores(i2t, text_image, t2i_scores=t2i)
    assert full["i2t"]["R@1"] == 100.0 and full["t2i"]["R@1"] == 100.0
    i2t, t2i = reranked_matrices(paths, texts, image_emb, text_emb, Oracle(), depth=1)
    assert (i2t == UNSCORED).sum() == 4 * 3 and (t2i == UNSCORED).sum() == 4 * 3  # one pair re-scored per query
    dense = evaluate_scores(image_emb @ text_emb.T, text_image)
    assert evaluate_scores(i2t, text_image, t2i_scores=t2i)["t2i"]["R@1"] == dense["t2i"]["R@1"]
