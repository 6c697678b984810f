"""Defects found by the hostile pass (issue 17), one test each at the depth of the fix: bounded
preprocessing, the record validator, writer leftovers and lock waits, source replacement."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile import HOSTILE_META, write_hostile_jsonl
from PIL import Image

from itr.collection import scan_source
from itr.encoders.base import resize_center_crop
from itr.errors import IndexLockedError, InputError
from itr.index import BuildOptions, DenseIndex, IndexWriter, build_index
from itr.records import FieldError, check_meta, id_problem, json_safe, parse_json
from itr.service import _SerialEncoder
from itr.testing import ColorEncoder, solid_image


@pytest.fixture
def bounded_resize(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Fail any Pillow resize to more than 4 MP before it allocates: the old resize asked for
    13440000 x 224 pixels to preprocess a 60000 x 1 image."""
    sizes: list[tuple[int, int]] = []
    original = Image.Image.resize

    def resize(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        w, h = size
        sizes.append((w, h))
        assert w * h <= 4_000_000, f"resize to {w}x{h}: work not bounded by the output"
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    return sizes


@pytest.mark.parametrize("size", [(60000, 1), (1, 60000), (8000, 3), (640, 480), (224, 224), (100, 50)])
def test_center_crop_resize_is_bounded_by_its_output(bounded_resize: list[tuple[int, int]], size: tuple[int, int]) -> None:
    img = Image.new("RGB", size, (200, 40, 40))
    out = resize_center_crop(img, 224)
    assert out.size == (224, 224) and bounded_resize
    assert np.asarray(out).reshape(-1, 3).mean(0).round().tolist() == [200, 40, 40]


def test_center_crop_keeps_the_same_pixels_as_resize_then_crop() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 517, 3), dtype=np.uint8))
    scale = 224 / 300
    big = img.resize((round(517 * scale), 224), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left = (big.width - 224) // 2
    ref = np.asarray(big.crop((left, 0, left + 224, 224)), dtype=np.int16)
    diff = np.abs(np.asarray(resize_center_crop(img, 224), dtype=np.int16) - ref)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_image_queries_are_preprocessed_outside_the_model_lock() -> None:
    """One slow or huge upload must not hold the model while it is resized: other queries wait only
    for model calls."""
    seen: list[bool] = []

    class Watching(ColorEncoder):
        def preprocess_image(self, image: Image.Image) -> np.ndarray:
            seen.append(serial._model.locked())
            return super().preprocess_image(image)

    serial = _SerialEncoder(Watching())
    out = serial.encode_images([Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (8, 8), (20, 20, 220))])
    assert seen == [False, False] and out.shape == (2, 16)
    np.testing.assert_allclose(out, ColorEncoder().encode_images([Image.new("RGB", (40, 30), (220, 20, 20)),
                                                                   Image.new("RGB", (8, 8), (20, 20, 220))]), atol=1e-6)


# -- the record validator --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", HOSTILE_META, ids=lambda c: c.name)
def test_hostile_meta_is_refused_in_one_line(case: Any) -> None:
    with pytest.raises(InputError) as refused:
        check_meta(parse_json(case.meta, "meta"), "meta", max_bytes=16384)
    assert case.reason in str(refused.value) and "\n" not in str(refused.value)


def test_meta_refusals_are_field_errors_and_good_meta_passes() -> None:
    with pytest.raises(FieldError):
        check_meta([1, 2], "meta")
    with pytest.raises(FieldError, match="holds nan, which JSON cannot represent"):
        check_meta({"x": float("nan")}, "meta")
    good = {"a": [1, 2.5, None, True, {"b": "café ☕"}], "n": 10**50}
    assert check_meta(good, "meta") is good


@pytest.mark.parametrize("item_id, ok", [
    ("a", True), ("img/001.png", True), ("upload/0123", True), ("café ☕", True), ("a#b?c%20", True),
    ("a/similar", False), ("a/thumbnail", False), ("x/similar.png", True), ("a\nb", False), (" a", False),
    ("a/../b", False), ("./a", False), ("a\udce9", False), ("", False), ("x" * 5000, False),
])
def test_item_ids(item_id: str, ok: bool) -> None:
    assert (id_problem(item_id) is None) == ok, id_problem(item_id)


def test_parse_json_messages() -> None:
    with pytest.raises(InputError, match="cut short"):
        parse_json('{"image": "a.png", "capt\n', "x.jsonl:3")
    with pytest.raises(InputError, match=r"Expecting .:. delimiter, at column 6\)"):
        parse_json('{"a" 1}\n', "x.jsonl:3")


def test_json_safe() -> None:
    assert json_safe({"caf\udce9.png": [float("nan"), 1.5, "\ud800x"]}) == {"caf\\xe9.png": [None, 1.5, "\\ud800x"]}


def test_every_hostile_jsonl_line_costs_one_item(tmp_path: Path) -> None:
    src = write_hostile_jsonl(tmp_path)
    scan = scan_source(src.jsonl)
    assert [it.id for it in scan.items] == src.ok_ids
    by_line = {int(p.split(": ", 1)[0].rsplit(":", 1)[1]): p for p in scan.problems}
    assert set(by_line) == set(src.bad_lines)
    for n, reason in src.bad_lines.items():
        assert reason in by_line[n] and "\n" not in by_line[n], (n, by_line[n])


def test_a_fifo_is_not_an_empty_file(tmp_path: Path) -> None:
    import os

    from itr.errors import BadImageError
    from itr.images import load_image

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(BadImageError, match="not a regular file \\(a FIFO\\)"):
        load_image(tmp_path / "pipe.png")  # returns at once: opening it would block
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(InputError, match="a FIFO, not a folder or a .jsonl file"):
        scan_source(tmp_path / "pipe.jsonl")


# -- the writer: leftovers of killed commits, waiting for the lock, another source -------------------------
ENC = {"spec": "x", "fingerprint": "f", "dim": 16}


def test_a_killed_first_commit_is_resumed_and_its_leftovers_removed(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "X"
    (out / "segments" / ".seg-000001.tmp").mkdir(parents=True)
    (out / ".lock").touch()
    (out / ".manifest.json.abcd1234.tmp").write_text("{")
    report = build_index(scan_source(color_folder), ColorEncoder(), out)
    assert report.added == 3 and len(DenseIndex.open(out)) == 3
    assert sorted(p.name for p in out.iterdir()) == [".lock", "manifest.json", "segments"]


def test_temp_files_of_killed_commits_are_removed_at_the_next_writer_start(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(scan_source(color_folder), ColorEncoder(), out)
    seg = next((out / "segments").iterdir())
    leftovers = [out / ".manifest.json.k1ll3d00.tmp", out / ".tombstones-000009.json.k1ll3d00.tmp",
                 seg / ".ann-images-g000002.faiss.tmp"]
    for f in leftovers:
        f.write_bytes(b"half")
    (out / "segments" / ".seg-000042.tmp").mkdir()
    with IndexWriter(out, encoder=ColorEncoder().describe()):
        pass
    assert not any(f.exists() for f in leftovers) and not (out / "segments" / ".seg-000042.tmp").exists()
    assert len(DenseIndex.open(out)) == 3


def test_the_writer_waits_for_the_lock_and_says_so(tmp_path: Path) -> None:
    holder_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with IndexWriter(tmp_path / "i", encoder=ENC):
            holder_ready.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    holder_ready.wait(10)
    told: list[str] = []
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with IndexWriter(tmp_path / "i", encoder=ENC, lock_timeout=10, on_wait=told.append):
        waited = time.monotonic() - start
    t.join()
    assert len(told) == 1 and "waiting up to 10 s" in told[0] and waited >= 0.25
    release.clear()
    holder_ready.clear()
    t = threading.Thread(target=hold)
    t.start()
    holder_ready.wait(10)
    with pytest.raises(IndexLockedError, match="held it for 0 s.*--lock-timeout"):
        IndexWriter(tmp_path / "i", encoder=ENC, lock_timeout=0.2).__enter__()
    release.set()
    t.join()


def test_another_source_is_refused_unless_replaced(color_folder: Path, color_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    enc = ColorEncoder()
    build_index(scan_source(color_folder), enc, out)
    with pytest.raises(InputError, match="was built from .*photos; indexing .*items.jsonl into it would replace its "
                                         "3 items: pass --replace-source"):
        build_index(scan_source(color_jsonl), enc, out)
    assert DenseIndex.open(out).manifest["source"] == str(color_folder.resolve())  # untouched
    report = build_index(scan_source(color_jsonl), enc, out, BuildOptions(replace_source=True))
    idx = DenseIndex.open(out)
    assert report.removed == 3 and report.added == 3 and idx.manifest["source"] == str(color_jsonl.resolve())
    assert {it["id"] for it in idx.items()} == {"r", "g", "img/b.png"}
    # the same source again, or a rebuild, needs nothing
    assert build_index(scan_source(color_jsonl), enc, out).unchanged == 3
    assert build_index(scan_source(color_folder), enc, out, BuildOptions(rebuild=True)).added == 3
    assert json.loads((out / "manifest.json").read_text())["source"] == str(color_folder.resolve())


def test_a_moved_source_is_encoded_again(color_folder: Path, tmp_path: Path) -> None:
    """Same ids under another folder: the records must point at the new files."""
    import shutil

    out = tmp_path / "idx"
    build_index(scan_source(color_folder), ColorEncoder(), out)
    moved = shutil.move(str(color_folder), tmp_path / "moved")
    report = build_index(scan_source(moved), ColorEncoder(), out, BuildOptions(replace_source=True))
    assert report.updated == 3
    assert all(Path(it["image"]).is_relative_to(tmp_path / "moved") for it in DenseIndex.open(out).items())


def test_folder_ids_of_odd_names(tmp_path: Path) -> None:
    from hostile import NON_UTF8_ID, NON_UTF8_NAME

    solid_image(tmp_path / "p" / NON_UTF8_NAME, "red")
    out = tmp_path / "idx"
    build_index(scan_source(tmp_path / "p"), ColorEncoder(), out)
    rec = DenseIndex.open(out).item(NON_UTF8_ID)
    assert rec is not None and Path(rec["image"]).name == NON_UTF8_NAME and Path(rec["image"]).is_file()
