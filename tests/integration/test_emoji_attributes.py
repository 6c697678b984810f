"""The offline ``emoji-attributes`` set, built from the real Noto font and CLDR names."""

from __future__ import annotations

from helpers import require_emoji_data

from itr.eval.matching import load_matching_set, run_matching
from itr.testing import ColorEncoder


def test_emoji_attribute_groups_and_their_chance_levels() -> None:
    require_emoji_data()
    ms = load_matching_set("emoji-attributes")
    kinds = {g.kind for g in ms.groups}
    assert kinds == {"skin_tone", "gender", "hair", "direction", "composition"}
    tones = [g for g in ms.groups if g.kind == "skin_tone"]
    assert len(tones) > 200 and all(len(g.images) == 5 for g in tones)  # the five Fitzpatrick tones
    assert any(ms.texts[g.texts[0]] == "thumbs up: light skin tone" for g in tones)
    assert not any(g.trained_on for g in tones)  # the emoji set never holds tone variants
    report = run_matching(ms, ColorEncoder())
    k = report["kinds"]
    assert k["skin_tone"]["chance"]["i2t_accuracy"] == 20.0 and k["gender"]["chance"]["i2t_accuracy"] == 50.0
    assert k["skin_tone"]["image_queries"] == 5 * len(tones)
    # The ColorEncoder's images live in colour dimensions that captions without a colour word never
    # touch: every caption of a group scores the same, and ties count as wrong (0, not chance).
    assert k["skin_tone"]["i2t_accuracy"] < 5.0
    for m in k.values():
        assert 0 <= m["i2t_accuracy"] <= 100 and m["groups"] >= 3
