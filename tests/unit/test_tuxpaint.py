"""Tux Paint's stamps as a training/evaluation set: the description reader and the built set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import require_tuxpaint_data

from itr.datasets.emoji import split_of
from itr.datasets.tuxpaint import read_description


def test_description_lines_by_language(tmp_path: Path) -> None:
    txt = tmp_path / "goat.txt"
    txt.write_text("A  goat.\nen_GB.utf8=A goat, innit.\nde.utf8=Eine Ziege.\nfr.utf8=\n"
                   "pt_BR.utf8=Uma cabra = bode.\nnot a key line = still English?\n\n", encoding="utf-8")
    assert read_description(txt) == {"en": "A goat.", "de": "Eine Ziege.", "pt_BR": "Uma cabra = bode."}


def test_built_set_has_photos_captions_in_many_languages_and_stable_splits(tmp_path: Path) -> None:
    require_tuxpaint_data()
    from itr.datasets.tuxpaint import build_tuxpaint_dataset

    en = build_tuxpaint_dataset(tmp_path)
    rows = [json.loads(line) for line in en.read_text(encoding="utf-8").splitlines()]
    assert len(rows) > 600 and len({r["id"] for r in rows}) == len(rows)
    goat = next(r for r in rows if r["id"] == "animals/mammals/bovines/goat")
    assert goat["captions"] == ["A goat."] and Path(goat["image"]).is_file()
    assert goat["meta"]["licence"] == "GPL-2+" and goat["meta"]["split"] == split_of(goat["id"])
    assert {r["meta"]["split"] for r in rows} == {"train", "val", "test"}
    de = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "tuxpaint-de.jsonl").read_text().splitlines()}
    assert de["animals/mammals/bovines/goat"]["captions"] == ["Eine Ziege."]
    assert len(list(tmp_path.glob("tuxpaint-*.jsonl"))) > 20  # many locales translate most stamps


def test_eval_scheme_ranks_one_gallery_in_several_languages() -> None:
    require_tuxpaint_data()
    from itr.errors import InputError
    from itr.eval import load_eval_dataset

    ds = load_eval_dataset("tuxpaint:en,fr")
    assert ds.split == "test" and ds.languages == ("en", "fr") and len(ds.items) > 50
    with pytest.raises(InputError, match="no descriptions in 'xx'"):
        load_eval_dataset("tuxpaint:xx")
