"""Reading evaluation datasets: Karpathy split files (fixtures in the real format) and JSONL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from itr.errors import InputError, UnknownNameError
from itr.eval import ANY_LANG, LoadOptions, load_eval_dataset
from itr.testing import solid_image

FIXTURES = Path(__file__).parent.parent / "fixtures" / "karpathy"
FLICKR_TEST = {"1000344755.jpg": "red", "1000366164.jpg": "green", "1000523639.jpg": "blue"}


@pytest.fixture
def flickr_root(tmp_path: Path) -> Path:
    root = tmp_path / "flickr30k-images"
    for name, color in {**FLICKR_TEST, "1000092795.jpg": "red", "10002456.jpg": "white",
                        "1000268201.jpg": "black"}.items():
        solid_image(root / name, color)
    return root


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    solid_image(root / "val2014" / "COCO_val2014_000000391895.jpg", "yellow")
    solid_image(root / "val2014" / "COCO_val2014_000000522418.jpg", "black")
    solid_image(root / "val2014" / "COCO_val2014_000000184613.jpg", "white")
    solid_image(root / "train2014" / "COCO_train2014_000000318556.jpg", "red")
    return root


def karpathy(name: str, root: Path, **kw: object) -> object:
    return load_eval_dataset(f"karpathy:{FIXTURES / name}", LoadOptions(images_root=str(root), **kw))  # type: ignore[arg-type]


def test_karpathy_flickr_test_split(flickr_root: Path) -> None:
    ds = karpathy("dataset_flickr30k.json", flickr_root)
    assert ds.split == "test" and not ds.multilingual
    assert [Path(it.image).name for it in ds.items] == list(FLICKR_TEST)
    assert [it.id for it in ds.items] == ["3", "4", "5"]  # imgid
    assert ds.items[0].captions[ANY_LANG][0] == "A red car parked by a red wall ."  # `raw`, not tokens
    table = ds.texts()
    assert len(table.texts) == 15 and table.image.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert table.slot.tolist() == [0, 1, 2, 3, 4] * 3
    assert ds.source["dataset"] == "flickr30k" and len(ds.source["sha256"]) == 64


def test_karpathy_other_splits_and_unknown_split(flickr_root: Path) -> None:
    assert len(karpathy("dataset_flickr30k.json", flickr_root, split="train").items) == 2
    assert len(karpathy("dataset_flickr30k.json", flickr_root, split="val").items) == 1
    with pytest.raises(InputError, match="unknown split 'testing'.*available: test, train, val"):
        karpathy("dataset_flickr30k.json", flickr_root, split="testing")


def test_karpathy_coco_filepath_and_five_captions(coco_root: Path) -> None:
    ds = karpathy("dataset_coco.json", coco_root)
    assert [it.id for it in ds.items] == ["391895", "522418"]  # cocoid; restval/train excluded
    assert Path(ds.items[0].image) == coco_root / "val2014" / "COCO_val2014_000000391895.jpg"
    assert len(ds.items[0].captions[ANY_LANG]) == 5  # the 6th caption is cut: the 5K protocol uses 5
    assert len(karpathy("dataset_coco.json", coco_root, max_captions=0).items[0].captions[ANY_LANG]) == 6
    # --images-root pointing at val2014 itself works too.
    ds2 = karpathy("dataset_coco.json", coco_root / "val2014")
    assert all(Path(it.image).is_file() for it in ds2.items)
    assert len(karpathy("dataset_coco.json", coco_root, split="restval").items) == 1


def test_karpathy_missing_images_reported_and_skipped_only_on_request(flickr_root: Path) -> None:
    (flickr_root / "1000366164.jpg").unlink()
    with pytest.raises(InputError, match=r"1 of 3 images .* missing \(first: .*1000366164.jpg\).*--skip-missing"):
        karpathy("dataset_flickr30k.json", flickr_root)
    ds = karpathy("dataset_flickr30k.json", flickr_root, skip_missing=True)
    assert len(ds.items) == 2 and len(ds.skipped) == 1 and "1000366164.jpg: missing" in ds.skipped[0]


def test_karpathy_needs_images_root_and_valid_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs --images-root"):
        load_eval_dataset(f"karpathy:{FIXTURES / 'dataset_coco.json'}")
    bad = tmp_path / "x.json"
    bad.write_text('{"annotations": []}')
    with pytest.raises(InputError, match="not a Karpathy split file"):
        load_eval_dataset(f"karpathy:{bad}", LoadOptions(images_root=str(tmp_path)))


def test_karpathy_empty_caption_is_an_error(tmp_path: Path, flickr_root: Path) -> None:
    data = json.loads((FIXTURES / "dataset_flickr30k.json").read_text())
    data["images"][4]["sentences"][2]["raw"] = "  "
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"images\[4\] \(1000366164.jpg\): empty caption"):
        load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(flickr_root)))


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_relative_paths_merging_and_caption_forms(tmp_path: Path) -> None:
    solid_image(tmp_path / "img" / "r.png", "red")
    solid_image(tmp_path / "img" / "g.png", "green")
    path = _write(tmp_path / "pairs.jsonl", [
        {"image": "img/r.png", "caption": "a red square"},  # one caption per line ...
        {"image": "img/g.png", "captions": ["a green square"], "id": "g"},
        {"image": "img/r.png", "caption": "crimson"},  # ... merged by image
    ])
    ds = load_eval_dataset(f"jsonl:{path}")
    assert ds.split is None and [it.id for it in ds.items] == ["img/r.png", "g"]
    assert ds.items[0].captions[ANY_LANG] == ("a red square", "crimson")
    assert Path(ds.items[0].image) == tmp_path / "img" / "r.png"


def test_jsonl_splits(tmp_path: Path) -> None:
    for c in ("red", "green", "blue"):
        solid_image(tmp_path / f"{c}.png", c)
    path = _write(tmp_path / "s.jsonl", [
        {"image": "red.png", "captions": ["red"], "split": "test"},
        {"image": "green.png", "captions": ["green"], "meta": {"split": "train"}},
        {"image": "blue.png", "captions": ["blue"], "meta": {"split": "test"}},
    ])
    assert len(load_eval_dataset(f"jsonl:{path}").items) == 3
    ds = load_eval_dataset(f"jsonl:{path}", LoadOptions(split="test"))
    assert [Path(it.image).name for it in ds.items] == ["red.png", "blue.png"] and ds.split == "test"
    with pytest.raises(InputError, match="unknown split 'dev'.*available: test, train"):
        load_eval_dataset(f"jsonl:{path}", LoadOptions(split="dev"))
    plain = _write(tmp_path / "p.jsonl", [{"image": "red.png", "captions": ["red"]}])
    with pytest.raises(InputError, match="has no 'split' field"):
        load_eval_dataset(f"jsonl:{plain}", LoadOptions(split="test"))


@pytest.mark.parametrize(("row", "message"), [
    ({"image": "a.png", "captions": []}, "non-empty list"),
    ({"image": "a.png", "captions": ["ok", ""]}, "empty caption"),
    ({"image": "a.png"}, "non-empty list"),
    ({"captions": ["x"]}, "needs an 'image'"),
    ({"image": "a.png", "captions": [3]}, "must be strings"),
])
def test_jsonl_bad_lines_name_file_and_line(tmp_path: Path, row: dict[str, object], message: str) -> None:
    solid_image(tmp_path / "a.png", "red")
    path = _write(tmp_path / "bad.jsonl", [{"image": "a.png", "captions": ["fine"]}, row])
    with pytest.raises(InputError, match=rf"bad.jsonl:2: .*{message}"):
        load_eval_dataset(f"jsonl:{path}")


def test_jsonl_not_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(InputError, match="x.jsonl:1: not valid JSON"):
        load_eval_dataset(f"jsonl:{path}")
    with pytest.raises(InputError, match="dataset file not found"):
        load_eval_dataset(f"jsonl:{tmp_path / 'nope.jsonl'}")


def test_unknown_scheme_lists_valid_forms() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset 'coco'.*jsonl:PATH.*karpathy:.*emoji.*openclipart"):
        load_eval_dataset("coco")
    with pytest.raises(InputError, match="needs a path"):
        load_eval_dataset("jsonl:")


def test_images_root_overrides_jsonl_folder(tmp_path: Path) -> None:
    solid_image(tmp_path / "elsewhere" / "a.png", "red")
    path = _write(tmp_path / "d.jsonl", [{"image": "a.png", "captions": ["red"]}])
    with pytest.raises(InputError, match="1 of 1 images"):
        load_eval_dataset(f"jsonl:{path}")
    ds = load_eval_dataset(f"jsonl:{path}", LoadOptions(images_root=str(tmp_path / "elsewhere")))
    assert Path(ds.items[0].image).is_file()
    shutil.rmtree(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="every image of .* is missing"):
        load_eval_dataset(f"jsonl:{path}", LoadOptions(images_root=str(tmp_path / "elsewhere"), skip_missing=True))


def _karpathy_copy(tmp_path: Path, name: str, edit: object) -> Path:
    data = json.loads((FIXTURES / name).read_text())
    edit(data)  # type: ignore[operator]
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_karpathy_checks_only_the_captions_and_split_it_evaluates(tmp_path: Path, coco_root: Path) -> None:
    def flaws(data: dict) -> None:
        test = data["images"][1]
        test["sentences"] += [{"raw": ""}, {"raw": "  "}]  # empty 6th and 7th sentences: cut by the 5-caption cap
        train = next(e for e in data["images"] if e["split"] == "train")
        train["sentences"][0]["raw"] = ""  # an empty caption in a train entry

    path = _karpathy_copy(tmp_path, "dataset_coco.json", flaws)
    ds = load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(coco_root)))
    assert len(ds.items) == 2 and all(len(it.captions[ANY_LANG]) == 5 for it in ds.items)
    with pytest.raises(InputError, match="empty caption"):  # the train split itself is still checked
        load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(coco_root), split="train"))
    with pytest.raises(InputError, match="empty caption"):  # and so are the captions --max-captions 0 keeps
        load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(coco_root), max_captions=0))


def test_karpathy_file_without_splits_is_evaluated_whole(tmp_path: Path, flickr_root: Path) -> None:
    def drop_splits(data: dict) -> None:
        for e in data["images"]:
            del e["split"]

    path = _karpathy_copy(tmp_path, "dataset_flickr30k.json", drop_splits)
    ds = load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(flickr_root)))
    assert ds.split is None and len(ds.items) == 6
    with pytest.raises(InputError, match="has no 'split' field; drop --split test"):
        load_eval_dataset(f"karpathy:{path}", LoadOptions(images_root=str(flickr_root), split="test"))


def test_karpathy_missing_image_is_reported_at_its_declared_path(coco_root: Path) -> None:
    (coco_root / "val2014" / "COCO_val2014_000000522418.jpg").unlink()
    with pytest.raises(InputError, match=r"first: .*coco/val2014/COCO_val2014_000000522418.jpg\)"):
        karpathy("dataset_coco.json", coco_root)
