"""`itr eval` end to end with the real built-in model on the built-in offline sets and a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import require_emoji_data, require_openclipart_data, run_cli
from PIL import Image

from itr.testing import solid_image

pytestmark = pytest.mark.builtin
itr = run_cli


def test_builtin_sets_two_models_one_run(tmp_path: Path) -> None:
    require_emoji_data()
    require_openclipart_data()
    out = tmp_path / "r.json"
    code, stdout, stderr = itr("eval", "emoji:en,fr", "openclipart", "-m", "builtin", "-m", "builtin:conse",
                               "--json", out, "--md", tmp_path / "r.md", "--plot", tmp_path / "r.png", "-q")
    assert code == 0, stderr
    runs = json.loads(out.read_text())["runs"]
    assert [(r["dataset"], r["model"]) for r in runs] == [
        ("emoji:en,fr", "builtin"), ("openclipart", "builtin"),
        ("emoji:en,fr", "builtin:conse"), ("openclipart", "builtin:conse")]
    emoji, clipart = runs[0], runs[1]
    assert emoji["split"] == clipart["split"] == "test"
    assert emoji["languages"] == ["en", "fr"] and set(emoji["per_language"]) == {"en", "fr"}
    assert emoji["mrv"]["i2t"] >= 0 and emoji["mrv"]["t2i_instances"] >= emoji["n_images"]
    assert emoji["n_images"] > 100 and clipart["n_images"] > 200
    # Far above chance (R@10 of a random ranking is 10 / n_images, under 10% here) on English emoji.
    assert emoji["per_language"]["en"]["t2i"]["R@10"] > 50 and emoji["per_language"]["fr"]["t2i"]["R@10"] > 30
    assert clipart["t2i"]["R@10"] > 50
    # The shipped trained heads clearly beat the training-free bridge on every offline test split.
    for trained, bridge in zip(runs[:2], runs[2:], strict=True):
        assert trained["rsum"] > bridge["rsum"] + 100, (trained["dataset"], trained["rsum"], bridge["rsum"])
    for r in runs:
        assert 0 <= r["i2t"]["R@1"] <= r["i2t"]["R@5"] <= r["i2t"]["R@10"] <= 100
        assert r["images_per_second"] > 0 and r["model_fingerprint"] and r["versions"]["torch"]
    md = (tmp_path / "r.md").read_text()
    assert md.count("| openclipart (test) |") == 2 and "| fr |" in md
    with Image.open(tmp_path / "r.png") as im:
        assert im.format == "PNG"
    assert "i2t" in stdout and "RSUM" in stdout and "per language" in stdout


def test_jsonl_split_and_json_to_stdout(tmp_path: Path) -> None:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    jsonl = build_emoji_dataset(tmp_path / "emoji", lang="en", limit=40)
    code, stdout, stderr = itr("eval", f"jsonl:{jsonl}", "--json", "-")
    assert code == 0, stderr
    report = json.loads(stdout)  # one run: the report object itself
    assert report["dataset"] == f"jsonl:{jsonl}" and report["n_images"] == 40 and report["split"] is None
    code, stdout, _ = itr("eval", f"jsonl:{jsonl}", "--split", "train", "--json", "-", "--tie", "optimistic")
    report = json.loads(stdout)
    assert code == 0 and report["split"] == "train" and 20 < report["n_images"] < 40
    assert report["tie_rule"] == "optimistic"


def test_impossible_combinations_are_refused_before_any_work(tmp_path: Path) -> None:
    code, _, stderr = itr("eval", f"jsonl:{tmp_path}/never-read.jsonl", "-m", "builtin", "-m", "builtin:conse",
                          "-m", "builtin:nope", "--index", "sparse")
    assert code == 2 and "nothing evaluated" in stderr and "never-read" not in stderr
    assert "--model builtin:conse with --index sparse: no lexicon head ships" in stderr
    assert "--model builtin:nope: unknown built-in model" in stderr and "--model builtin:" in stderr


def test_a_model_that_cannot_load_costs_that_model_only(tmp_path: Path) -> None:
    for i, color in enumerate(("red", "green", "blue", "yellow")):
        solid_image(tmp_path / f"{i}.png", color)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(f'{{"image": "{i}.png", "captions": ["a {c} square"]}}\n'
                             for i, c in enumerate(("red", "green", "blue", "yellow"))))
    (tmp_path / "empty-model").mkdir()
    code, stdout, stderr = itr("eval", f"jsonl:{jsonl}", "-m", "builtin:conse", "-m", f"local:{tmp_path / 'empty-model'}",
                               "--json", tmp_path / "r.json")
    assert code == 2 and "skipped model local:" in stderr and "cannot load model" in stderr
    report = json.loads((tmp_path / "r.json").read_text())  # one run: the report itself
    assert report["model"] == "builtin:conse" and "cannot load model" in report["skipped_models"][0]
    assert "None" not in stdout and "(4 images, 4 texts)" in stdout  # a set without splits names none


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "coco:{tmp}/x.json"], "unknown dataset 'coco:"),
    (["eval", "jsonl:{tmp}/missing.jsonl"], "dataset file not found"),
    (["eval", "emoji:en", "--split", "dev"], "unknown split 'dev'"),
    (["eval", "jsonl:{tmp}/gone.jsonl"], "1 of 2 images of jsonl:"),
    (["eval", "jsonl:{tmp}/empty_caption.jsonl"], "empty caption"),
    (["eval", "emoji:en", "--index", "annoy"], "unknown index kind 'annoy'; valid: exact, auto, hnsw"),
    (["eval", "emoji:en", "--plot", "{tmp}/p.gif"], "--plot"),
    (["eval", "emoji:en", "--tie", "random"], "--tie must be"),
    (["eval", "emoji:zz-nope"], "no CLDR annotations for language 'zz-nope'"),
    (["eval", "karpathy:{tmp}/x.json"], "dataset file not found"),
])
def test_eval_bad_input_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    require_emoji_data()
    solid_image(tmp_path / "a.png", "red")
    (tmp_path / "gone.jsonl").write_text('{"image": "a.png", "captions": ["red"]}\n'
                                         '{"image": "b.png", "captions": ["blue"]}\n')
    (tmp_path / "empty_caption.jsonl").write_text('{"image": "a.png", "captions": [""]}\n')
    code, stdout, stderr = itr(*[a.format(tmp=tmp_path) for a in args], "-q")
    assert code == 2, (stdout, stderr)
    assert message in stderr and "Traceback" not in stderr + stdout
    assert len(stderr.strip().splitlines()) == 1


def test_skip_missing_evaluates_the_rest(tmp_path: Path) -> None:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    jsonl = build_emoji_dataset(tmp_path / "emoji", lang="en", limit=12)
    first = json.loads(jsonl.read_text().splitlines()[0])
    (jsonl.parent / first["image"]).unlink()
    code, stdout, stderr = itr("eval", f"jsonl:{jsonl}", "--skip-missing", "--json", "-")
    report = json.loads(stdout)
    assert code == 0 and report["n_images"] == 11 and report["skipped_images"] == 1


def test_karpathy_fixture_with_builtin(tmp_path: Path) -> None:
    fixtures = Path(__file__).parent.parent / "fixtures" / "karpathy"
    for name, color in {"1000344755.jpg": "red", "1000366164.jpg": "green", "1000523639.jpg": "blue"}.items():
        solid_image(tmp_path / name, color)
    code, stdout, stderr = itr("eval", f"karpathy:{fixtures / 'dataset_flickr30k.json'}", "--images-root", tmp_path,
                               "--json", "-")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert (report["n_images"], report["n_texts"], report["split"]) == (3, 15, "test")
    assert report["dataset_source"]["dataset"] == "flickr30k" and report["model"] == "builtin"


def test_gcompris_photos_in_two_languages(tmp_path: Path) -> None:
    """The held-out real-photo set through the CLI: built on first use, English and French captions
    of the same photos, far above chance with the training-free bridge."""
    from helpers import require_gcompris_data

    require_gcompris_data()
    out = tmp_path / "g.json"
    code, _, stderr = itr("eval", "gcompris-photos:en,fr", "-m", "builtin:conse", "--json", out, "-q")
    assert code == 0, stderr
    run = json.loads(out.read_text())  # one run: the report object itself
    assert run["languages"] == ["en", "fr"] and run["split"] == "test" and run["n_images"] > 40
    chance = 100 * 10 / run["n_images"]
    assert run["per_language"]["en"]["t2i"]["R@10"] > 3 * chance and run["per_language"]["fr"]["t2i"]["R@10"] > chance


def test_protocols_pick_the_captions_and_ci_compares_runs(tmp_path: Path) -> None:
    """COCO's fixture has a test image with 6 captions: clip_benchmark keeps them all, karpathy5 five."""
    fixtures = Path(__file__).parent.parent / "fixtures" / "karpathy"
    for name, color in {"COCO_val2014_000000391895.jpg": "red", "COCO_val2014_000000522418.jpg": "green"}.items():
        solid_image(tmp_path / "val2014" / name, color)
    spec = f"karpathy:{fixtures / 'dataset_coco.json'}"
    texts = {}
    for protocol in ("clip_benchmark", "karpathy5", "lavis", "itr"):
        code, stdout, stderr = itr("eval", spec, "--images-root", tmp_path, "--protocol", protocol, "--json", "-")
        assert code == 0, stderr
        report = json.loads(stdout)
        assert report["protocol"] == protocol and "tie_band" in report
        texts[protocol] = report["n_texts"]
    assert texts == {"clip_benchmark": 11, "karpathy5": 10, "lavis": 11, "itr": 10}
    out = tmp_path / "ci.json"
    code, stdout, stderr = itr("eval", spec, "--images-root", tmp_path, "-m", "builtin", "-m", "builtin:conse",
                               "--ci", "--resamples", "100", "--json", out, "-q")
    assert code == 0, stderr
    runs = json.loads(out.read_text())["runs"]
    assert runs[0]["ci"]["resamples"] == 100 and "compared_to" not in runs[0]
    assert runs[1]["compared_to"]["baseline"] == "builtin" and 0 <= runs[1]["compared_to"]["p_value"] <= 1
    assert "95 % CI" in stdout and "vs builtin" in stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--protocol", "coco"], "unknown protocol 'coco'; valid: itr, clip_benchmark, karpathy5, lavis"),
    (["--protocol", "karpathy5", "--max-captions", "3"], "contradicts --protocol karpathy5"),
    (["--decode", "draft"], "--decode must be"),
    (["--ci", "--resamples", "3"], "--resamples must be at least 10"),
])
def test_protocol_and_ci_bad_options(args: list[str], message: str) -> None:
    code, stdout, stderr = itr("eval", "emoji:en", *args, "-q")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_matching_set_through_the_cli(tmp_path: Path) -> None:
    """A Winoground folder in its public format: a matching table, chance levels, JSON keys."""
    wino = tmp_path / "wino"
    for name, color in {"a0": "red", "a1": "green", "b0": "blue", "b1": "yellow"}.items():
        solid_image(wino / "images" / f"{name}.png", color, size=(96, 96))
    (wino / "examples.jsonl").write_text(
        json.dumps({"id": 0, "image_0": "a0", "image_1": "a1", "caption_0": "a red square", "caption_1": "a green square",
                    "collapsed_tag": "Object"}) + "\n"
        + json.dumps({"id": 1, "image_0": "b0", "image_1": "b1", "caption_0": "a blue square",
                      "caption_1": "a yellow square", "collapsed_tag": "Object"}) + "\n")
    out = tmp_path / "m.json"
    code, stdout, stderr = itr("eval", f"winoground:{wino}", "-m", "builtin:conse", "--json", out, "--md",
                               tmp_path / "m.md", "-q")
    assert code == 0, stderr
    report = json.loads(out.read_text())
    assert report["task"] == "matching" and report["n_groups"] == 2
    assert report["kinds"]["Object"]["chance"]["text_score"] == 25.0
    assert set(report["overall"]) >= {"i2t_accuracy", "t2i_accuracy", "text_score", "image_score", "group_score"}
    assert "matching within groups" in stdout and "| Object |" in (tmp_path / "m.md").read_text()


def test_calibrate_then_search_says_no_good_match(tmp_path: Path) -> None:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    jsonl = build_emoji_dataset(tmp_path / "emoji", lang="en", limit=40)
    index = tmp_path / "idx"
    code, _, stderr = itr("index", jsonl, "--out", index, "-q")
    assert code == 0, stderr
    code, stdout, stderr = itr("calibrate", index, "--on", f"jsonl:{jsonl}", "--precision", "0.5", "-q")
    assert code == 0, stderr
    assert "threshold" in stdout and (index / "calibration.json").is_file()
    saved = json.loads((index / "calibration.json").read_text())
    assert saved["model"].startswith("builtin") and saved["target_precision"] == 0.5 and saved["queries"] > 0
    code, stdout, stderr = itr("search", index, "quarterly tax report, spreadsheet, invoice", "--min-score", "auto",
                               "--json")
    assert code == 0, stderr
    out = json.loads(stdout)
    assert out["min_score"] == saved["threshold"] and all(r["score"] >= out["min_score"] for r in out["results"])
    assert out["no_good_match"] == (out["results"] == [])
    code, stdout, _ = itr("search", index, "anything", "--min-score", "9")
    assert code == 0 and "no good match: nothing scores at least 9.0000" in stdout
    code, _, stderr = itr("calibrate", tmp_path / "nothing", "--on", f"jsonl:{jsonl}")
    assert code == 2 and "not an index folder" in stderr
    # itr eval --no-match: fitted on val, measured on test, under documented keys.
    code, stdout, stderr = itr("eval", f"jsonl:{jsonl}", "--split", "test", "--no-match", "0.5", "--json", "-")
    assert code == 0, stderr
    nm = json.loads(stdout)["no_match"]
    assert set(nm) >= {"threshold", "target_precision", "fitted_on", "answer_precision", "coverage",
                       "no_match_precision", "no_match_recall"} and "(val)" in nm["fitted_on"]


def test_perturbations_and_failures_through_the_cli(tmp_path: Path) -> None:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    jsonl = build_emoji_dataset(tmp_path / "emoji", lang="en", limit=16)
    out = tmp_path / "r.json"
    # (PGD through the real model: tests/integration/test_eval_attack.py.)
    code, stdout, stderr = itr("eval", f"jsonl:{jsonl}", "--perturb", "rotate@degrees=90", "--perturb",
                               "typographic", "--failures", "3", "--failures-dir", tmp_path / "f",
                               "--md", tmp_path / "r.md", "--json", out, "-q")
    assert code == 0, stderr
    report = json.loads(out.read_text())
    assert set(report["perturbations"]) == {"rotate@degrees=90", "typographic"}
    turned = report["perturbations"]["rotate@degrees=90"]
    assert turned["kind"] == "rotate" and turned["params"] == {"degrees": 90.0}
    assert turned["rsum"] == pytest.approx(report["rsum"] - turned["rsum_drop"])
    assert "rotate@degrees=90: RSUM" in stdout and "Robustness" in (tmp_path / "r.md").read_text()
    md = Path(report["failures_files"])
    assert md.is_file() and md.with_suffix(".png").is_file() and "Text → image" in md.read_text()
    code, _, stderr = itr("eval", f"jsonl:{jsonl}", "--perturb", "fog", "-q")
    assert code == 2 and "unknown perturbation 'fog'; valid: jpeg, blur" in stderr
