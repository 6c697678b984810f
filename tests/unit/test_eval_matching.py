"""Matching within groups (SugarCrepe / Winoground / emoji-attributes): metrics by hand, chance
levels, and the public file formats, with the ColorEncoder (known answers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itr.datasets.emoji_attributes import find_groups
from itr.errors import InputError, UnknownNameError
from itr.eval.matching import MatchGroup, load_matching_set, run_matching, score_groups
from itr.testing import ColorEncoder, solid_image


def _one_hot(rows: list[int], dim: int = 4) -> np.ndarray:
    out = np.zeros((len(rows), dim), dtype=np.float32)
    out[np.arange(len(rows)), rows] = 1.0
    return out


def test_winoground_scores_by_hand() -> None:
    # Group A: both images pick their caption, both captions their image -> all right.
    # Group B: image 1 prefers caption 0 (text score wrong); captions still prefer their images? caption 0
    # scores image 0 (1.0) over image 1 (0.8): right; caption 1 scores image 1 (0.6) over image 0 (0.0).
    images = np.array([[1, 0], [0, 1], [1, 0], [0.8, 0.6]], dtype=np.float32)
    texts = np.array([[1, 0], [0, 1]], dtype=np.float32)
    groups = [MatchGroup("a", (0, 1), (0, 1), (0, 1)), MatchGroup("b", (2, 3), (0, 1), (0, 1))]
    out = score_groups(images, texts, groups)
    a, b = out["kinds"]["a"], out["kinds"]["b"]
    assert (a["text_score"], a["image_score"], a["group_score"]) == (100.0, 100.0, 100.0)
    assert (b["i2t_accuracy"], b["t2i_accuracy"]) == (50.0, 100.0)
    assert (b["text_score"], b["image_score"], b["group_score"]) == (0.0, 100.0, 0.0)
    # Winoground's chance: text 25 %, image 25 %, group 1/6 (the two right pairs are the top two of 4).
    assert a["chance"]["text_score"] == 25.0 and a["chance"]["image_score"] == 25.0
    assert a["chance"]["group_score"] == pytest.approx(100 / 6, abs=2.0)
    assert out["overall"]["group_score"] == 50.0


def test_hard_negative_groups_and_ties_are_wrong() -> None:
    # SugarCrepe: one image, [caption, negative]; i2t only. A tie between them is wrong.
    images = _one_hot([0, 1])
    texts = np.stack([_one_hot([0])[0], _one_hot([2])[0], _one_hot([1])[0], _one_hot([1])[0]])
    groups = [MatchGroup("replace_obj", (0,), (0, 1), (0, -1)), MatchGroup("replace_obj", (1,), (2, 3), (0, -1))]
    k = score_groups(images, texts, groups)["kinds"]["replace_obj"]
    assert k["i2t_accuracy"] == 50.0 and k["t2i_accuracy"] is None and k["image_score"] is None
    assert k["chance"]["i2t_accuracy"] == 50.0


def test_one_attribute_groups_from_cldr_names() -> None:
    names = {"👍🏿": "thumbs up: dark skin tone", "👍🏻": "thumbs up: light skin tone", "🚴‍♀": "woman biking",
             "🚴‍♂": "man biking", "🚴": "person biking", "👈": "backhand index pointing left",
             "👉": "backhand index pointing right", "👨‍🦰": "man: red hair", "👨‍🦱": "man: curly hair",
             "👨‍👩‍👦": "family: man, woman, boy", "👨‍👩‍👧": "family: man, woman, girl",
             "🚴🏿‍♀": "woman biking: dark skin tone", "🧑‍🦰": "person: red hair"}
    groups = find_groups(names)
    named = {kind: [sorted(names[c] for c in g) for g in gs] for kind, gs in groups.items()}
    assert named["skin_tone"] == [["thumbs up: dark skin tone", "thumbs up: light skin tone"]]
    assert named["gender"] == [["man biking", "woman biking"]]  # "person biking" is not a gender swap
    assert named["direction"] == [["backhand index pointing left", "backhand index pointing right"]]
    assert named["hair"] == [["man: curly hair", "man: red hair"]]  # a lone "person: red hair" is no group
    assert named["composition"] == [["family: man, woman, boy", "family: man, woman, girl"]]
    # A tone with a gender (two attributes) joins no group.
    assert not any("woman biking: dark skin tone" in g for gs in named.values() for g in gs)


def test_winoground_and_sugarcrepe_files(tmp_path: Path) -> None:
    wino = tmp_path / "winoground"
    for name, color in {"ex_0_img_0": "red", "ex_0_img_1": "green", "ex_1_img_0": "blue", "ex_1_img_1": "yellow"}.items():
        solid_image(wino / "images" / f"{name}.png", color)
    rows = [{"id": 0, "image_0": "ex_0_img_0", "image_1": "ex_0_img_1", "caption_0": "red", "caption_1": "green",
             "collapsed_tag": "Object"},
            {"id": 1, "image_0": "ex_1_img_0", "image_1": "ex_1_img_1", "caption_0": "blue", "caption_1": "yellow",
             "collapsed_tag": "Relation"}]
    (wino / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ms = load_matching_set(f"winoground:{wino}")
    assert len(ms.groups) == 2 and len(ms.image_paths) == 4 and {g.kind for g in ms.groups} == {"Object", "Relation"}
    report = run_matching(ms, ColorEncoder())
    assert report["task"] == "matching" and report["overall"]["group_score"] == 100.0

    crepe = tmp_path / "sugarcrepe"
    solid_image(crepe / "val2017" / "000000000001.jpg", "red")
    solid_image(crepe / "val2017" / "000000000002.jpg", "blue")
    (crepe / "replace_att.json").write_text(json.dumps({
        "0": {"filename": "000000000001.jpg", "caption": "a red box", "negative_caption": "a blue box"},
        "7": {"filename": "000000000002.jpg", "caption": "a yellow box", "negative_caption": "a blue box"}}))
    (crepe / "swap_obj.json").write_text(json.dumps({
        "3": {"filename": "000000000002.jpg", "caption": "blue", "negative_caption": "red"}}))
    ms = load_matching_set(f"sugarcrepe:{crepe}")
    assert [g.kind for g in ms.groups] == ["replace_att", "replace_att", "swap_obj"] and len(ms.image_paths) == 2
    kinds = run_matching(ms, ColorEncoder())["kinds"]
    assert kinds["replace_att"]["i2t_accuracy"] == 50.0 and kinds["swap_obj"]["i2t_accuracy"] == 100.0

    (crepe / "add_obj.json").write_text(json.dumps({"1": {"filename": "x.jpg", "caption": "a"}}))
    with pytest.raises(InputError, match="entry '1' needs non-empty filename, caption and negative_caption"):
        load_matching_set(f"sugarcrepe:{crepe}")
    (crepe / "add_obj.json").write_text(json.dumps({"1": {"filename": "gone.jpg", "caption": "a",
                                                          "negative_caption": "b"}}))
    with pytest.raises(InputError, match="1 of 1 images of sugarcrepe:.* are missing"):
        load_matching_set(f"sugarcrepe:{crepe}")
    assert len(load_matching_set(f"sugarcrepe:{crepe}", skip_missing=True).groups) == 3
    with pytest.raises(InputError, match="needs a folder"):
        load_matching_set("winoground")
    with pytest.raises(UnknownNameError, match="valid forms"):
        load_matching_set("crepe:x")
