from __future__ import annotations

import os
from pathlib import Path

import pytest

from itr.collection import OnError, scan_source
from itr.errors import InputError
from itr.testing import solid_image


def test_folder_scan_recursive_skips_hidden_and_non_images(color_folder: Path) -> None:
    scan = scan_source(color_folder)
    assert [it.id for it in scan.items] == ["green.jpg", "red.png", "sub/blue.webp"]
    assert all(os.path.isabs(it.image or "") for it in scan.items)
    assert scan.problems == []


@pytest.mark.parametrize("ext", ["jpg", "JPEG", "png", "webp", "gif", "bmp", "tif", "tiff"])
def test_all_extensions(tmp_path: Path, ext: str) -> None:
    fmt = {"jpg": "JPEG", "JPEG": "JPEG", "tif": "TIFF"}.get(ext)
    solid_image(tmp_path / f"a.{ext}", "red", fmt=fmt)
    assert len(scan_source(tmp_path).items) == 1


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        scan_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        scan_source(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("a,b")
    with pytest.raises(InputError, match="not a folder, a .jsonl file, .tar shards or a .parquet/.csv/.tsv table"):
        scan_source(tmp_path / "x.txt")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="x.csv: no image column .* --image-col"):
        scan_source(tmp_path / "x.csv")


def test_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    solid_image(tmp_path / name, "red")
    solid_image(tmp_path / "spaced name ü.png", "blue")
    solid_image(tmp_path / "line\nbreak.png", "green")
    scan = scan_source(tmp_path)
    # Ids are valid Unicode (JSON, URLs): the undecodable byte and the control character as escapes;
    # the image path stays the real file name.
    assert {it.id: Path(it.image).name for it in scan.items} == {
        "caf\\xe9.png": name, "spaced name ü.png": "spaced name ü.png", "line\\x0abreak.png": "line\nbreak.png"}


def test_jsonl_items(color_jsonl: Path) -> None:
    scan = scan_source(color_jsonl)
    assert [it.id for it in scan.items] == ["r", "g", "img/b.png"]
    r = scan.items[0]
    assert r.captions == ("a red square", "crimson tile") and r.meta == {"n": 1}
    assert r.image == str(color_jsonl.parent / "img" / "r.png")


def test_jsonl_bad_lines_reported_with_line_numbers(color_jsonl: Path) -> None:
    text = color_jsonl.read_text()
    color_jsonl.write_text(
        text
        + "{not json\n"
        + '{"image": "img/missing.png", "captions": ["x"]}\n'
        + '{"image": "img/r.png", "captions": "one caption", "id": "r2"}\n'
        + '{"captions": [1, 2], "id": "bad"}\n'
        + '{"image": "img/g.png", "id": "g"}\n'
        + '{"captions": ["text only"], "id": "t1"}\n'
        + '{"captions": ["  "], "id": "blank"}\n'
    )
    scan = scan_source(color_jsonl)
    assert [it.id for it in scan.items] == ["r", "g", "img/b.png", "r2", "t1"]
    assert scan.items[3].captions == ("one caption",)
    assert scan.items[4].image is None
    lines = [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in scan.problems]
    assert lines == ["4", "5", "7", "8", "10"]
    assert "not valid JSON" in scan.problems[0]
    assert "cannot be read" in scan.problems[1]
    assert "duplicate id 'g'" in scan.problems[3]
    with pytest.raises(InputError, match=r"items.jsonl:4: not valid JSON.*--on-error stop"):
        scan_source(color_jsonl, on_error=OnError.STOP)


def test_jsonl_not_utf8_and_all_bad(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"captions": ["caf\xe9"], "id": "x"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl: no usable items; first problem: .*bad.jsonl:1: not UTF-8"):
        scan_source(p)


def test_signature_changes_with_captions(color_jsonl: Path) -> None:
    before = {it.id: it.signature for it in scan_source(color_jsonl).items}
    color_jsonl.write_text(color_jsonl.read_text().replace("a green square", "a lime square"))
    after = {it.id: it.signature for it in scan_source(color_jsonl).items}
    assert before["r"] == after["r"] and before["g"] != after["g"]
