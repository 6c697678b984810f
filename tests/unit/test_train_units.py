"""Training building blocks: losses, the evaluation-split guard, projector checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from itr.datasets.emoji import split_of  # noqa: E402
from itr.encoders.projector import HeadsConfig, build_heads, load_projector, save_projector  # noqa: E402
from itr.errors import IncompatibleModelError, InputError  # noqa: E402
from itr.eval import EvalDataset, EvalItem  # noqa: E402
from itr.train.data import _emoji_key, check_no_eval_items  # noqa: E402
from itr.train.losses import info_nce, sigmoid_loss  # noqa: E402


def _pairs(aligned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    txt = img.clone() if aligned else torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    return img, txt


def test_info_nce_rewards_alignment_and_has_gradients() -> None:
    scale = torch.tensor(3.0, requires_grad=True)
    good = info_nce(*_pairs(True), scale)
    bad = info_nce(*_pairs(False), scale)
    assert good < bad
    # Perfect alignment at the clamp (scale 100): loss close to zero; uniform logits give log(B).
    assert float(info_nce(*_pairs(True), torch.tensor(10.0))) < 0.05
    assert float(info_nce(*_pairs(True), torch.tensor(-50.0))) == pytest.approx(float(torch.log(torch.tensor(16.0))), abs=1e-4)
    bad.backward()
    assert scale.grad is not None


def test_sigmoid_loss_rewards_alignment() -> None:
    scale, bias = torch.tensor(2.3), torch.tensor(-10.0)
    assert sigmoid_loss(*_pairs(True), scale, bias) < sigmoid_loss(*_pairs(False), scale, bias)


def test_eval_split_items_are_refused_for_training() -> None:
    # Find real emoji characters of each split by the same hash the dataset uses.
    chars = {split_of(chr(cp)): chr(cp) for cp in range(0x1F600, 0x1F650)}
    assert {"train", "val", "test"} <= set(chars)

    def item(ch: str) -> EvalItem:
        item_id = "emoji_" + "-".join(f"{ord(c):04x}" for c in ch)
        assert _emoji_key(item_id) == ch
        return EvalItem(item_id, "x.png", {"": ("c",)})

    check_no_eval_items(EvalDataset("emoji:en", "train", (item(chars["train"]),)), "emoji")
    for split in ("val", "test"):
        ds = EvalDataset("emoji:en", "train", (item(chars["train"]), item(chars[split])))
        with pytest.raises(InputError, match="1 item\\(s\\) from evaluation splits in the training data"):
            check_no_eval_items(ds, "emoji")
    # Clip art: the key is the path in the collection.
    keys = {split_of(f"animals/cat_{i:02d}"): f"animals/cat_{i:02d}" for i in range(100)}
    check_no_eval_items(EvalDataset("openclipart", "train", (EvalItem(keys["train"], "x", {"": ("c",)}),)), "openclipart")
    with pytest.raises(InputError, match="evaluation splits"):
        check_no_eval_items(EvalDataset("openclipart", "train", (EvalItem(keys["test"], "x", {"": ("c",)}),)), "openclipart")


def test_projector_checkpoint_roundtrip_and_refusals(tmp_path: Path) -> None:
    config = HeadsConfig(hidden=16, text_head=True)
    heads = build_heads(config)
    with torch.no_grad():
        heads.text_mlp[-1].weight.normal_()  # non-trivial text head
    save_projector(tmp_path, heads, config, trained_with={"seed": 1})
    loaded_config, loaded = load_projector(tmp_path)
    assert loaded_config.hidden == 16 and loaded_config.conse_templates == config.conse_templates
    x = torch.nn.functional.normalize(torch.randn(3, 384), dim=-1)
    assert torch.allclose(loaded.text(x), heads.eval().text(x), atol=2e-3)  # float16 storage
    meta = json.loads((tmp_path / "projector.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "projector.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModelError, match="format version 99 is not supported"):
        load_projector(tmp_path)
    meta["format_version"] = 1
    meta["heads"]["hidden"] = 32  # weights are 16 wide
    (tmp_path / "projector.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModelError, match="weights do not match projector.json"):
        load_projector(tmp_path)


def test_heads_on_the_multilingual_text_model_are_512_wide_and_say_so(tmp_path: Path) -> None:
    """``text_model="use-m"``: the heads read and write USE-m's 512-d space, the gated embedding is
    1024-d, the saved config names the text model (old configs without it read as MiniLM), and the
    bridge it implies reads USE-m's class texts."""
    from itr.encoders.builtin import bridge_config

    config = HeadsConfig(hidden=16, bridge="v2", gate=(0.3, 0.05), text_model="use-m")
    assert (config.text_dim, config.dim) == (512, 1024)
    heads = build_heads(config).eval()
    heads.set_prototypes(torch.randn(40, 1280), torch.Generator().manual_seed(0))
    pooled, conse = torch.randn(2, 1280), torch.nn.functional.normalize(torch.randn(2, 512), dim=-1)
    assert heads.embed_image(pooled, conse).shape == (2, 1024)
    assert heads.embed_text(torch.randn(3, 512)).shape == (3, 1024)
    save_projector(tmp_path, heads, config)
    loaded_config, _ = load_projector(tmp_path)
    assert loaded_config == config and bridge_config(loaded_config).text_model == "use-m"
    meta = json.loads((tmp_path / "projector.json").read_text())
    del meta["heads"]["text_model"]
    meta["heads"]["bridge"], meta["heads"]["gate"] = "v1", None
    (tmp_path / "projector.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModelError, match="weights do not match"):
        load_projector(tmp_path)  # read as MiniLM heads (384-d): the 512-d weights do not fit
    with pytest.raises(ValueError, match="unknown text model 'bert'"):
        _ = HeadsConfig(text_model="bert").dim
    with pytest.raises(ValueError, match="bridge v1 reads MiniLM only"):
        bridge_config(HeadsConfig(text_model="use-m"))
