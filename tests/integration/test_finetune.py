"""`itr train finetune` end to end with tiny randomly initialised CLIP/SigLIP checkpoints on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_checkpoint

from itr.encoders import load_encoder
from itr.errors import IncompatibleModelError, InputError
from itr.testing import solid_image
from itr.train.finetune import FinetuneConfig, finetune

pytestmark = pytest.mark.hf

COLORS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20),
          "black": (5, 5, 5), "white": (250, 250, 250), "purple": (130, 20, 160), "orange": (250, 140, 0)}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic task: solid colours with slightly different shades, captioned by colour name."""
    root = tmp_path_factory.mktemp("pairs")
    lines = []
    for name, (r, g, b) in COLORS.items():
        for k in range(6):
            shade = (min(255, r + 4 * k), min(255, g + 4 * k), min(255, b + 4 * k))
            img = solid_image(root / f"{name}{k}.png", shade, size=(40, 40))
            split = "val" if k == 5 else "train"
            lines.append(json.dumps({"image": img.name, "captions": [f"a {name} square", name], "split": split}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return root / "pairs.jsonl"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("clip", tmp_path_factory.mktemp("clip") / "ckpt", seed=0)


def config(model: str, pairs: Path, **kw: object) -> FinetuneConfig:
    base: dict[str, object] = {"model": model, "data": f"jsonl:{pairs}", "epochs": 4, "batch_size": 8, "lr": 3e-3}
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def test_finetune_improves_validation_recall_and_saves_loadable_best(tiny_clip: Path, pairs: Path, tmp_path: Path) -> None:
    metrics = finetune(config(f"local:{tiny_clip}", pairs), tmp_path / "ft")
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4] and metrics["loss"] == "infonce"
    before, best = epochs[0]["val"]["rsum"], metrics["best_val_rsum"]
    assert best > before + 30, (before, best)  # random init -> learns colour names
    assert epochs[-1]["loss"] < epochs[1]["loss"]
    enc = load_encoder(f"local:{tmp_path / 'ft' / 'best'}")
    assert enc.fingerprint != load_encoder(f"local:{tiny_clip}").fingerprint
    assert json.loads((tmp_path / "ft" / "finetune_config.json").read_text())["epochs"] == 4


def test_finetune_resumes_after_interruption(tiny_clip: Path, pairs: Path, tmp_path: Path) -> None:
    cfg = config(f"local:{tiny_clip}", pairs, epochs=3)
    calls = {"n": 0}

    def interrupt_in_epoch_2(done: int, total: int) -> None:
        calls["n"] += 1
        if done > total * 2 // 3:  # during the third epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, tmp_path / "ft", progress=interrupt_in_epoch_2)
    state = json.loads((tmp_path / "ft" / "last" / "trainer_state.json").read_text())
    assert state  # the last finished epoch was checkpointed
    lines: list[str] = []
    metrics = finetune(cfg, tmp_path / "ft", log=lines.append)
    assert lines[0].startswith("resuming after epoch 2")
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1, 2, 3]
    # The resumed run ends where an uninterrupted one does (same data order, RNG and optimizer state).
    straight = finetune(cfg, tmp_path / "straight")
    assert metrics["epochs"][-1]["loss"] == pytest.approx(straight["epochs"][-1]["loss"], rel=1e-4)
    with pytest.raises(InputError, match="another configuration"):
        finetune(config(f"local:{tiny_clip}", pairs, epochs=5), tmp_path / "ft")


def test_siglip_sigmoid_loss_and_frozen_towers(pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import itr.train.finetune as ft

    siglip = save_tiny_checkpoint("siglip", tmp_path / "siglip", seed=1)
    metrics = finetune(config(f"local:{siglip}", pairs, epochs=1, freeze="towers"), tmp_path / "ft")
    assert metrics["loss"] == "sigmoid"  # auto: SigLIP checkpoints train with their own loss
    enc = load_encoder(f"local:{tmp_path / 'ft' / 'best'}")
    assert enc.dim == load_encoder(f"local:{siglip}").dim
    monkeypatch.setitem(ft._FREEZE_PREFIXES, "towers", ("",))  # a freeze that matches every parameter
    with pytest.raises(InputError, match="leaves nothing to train"):
        finetune(config(f"local:{siglip}", pairs, epochs=1, freeze="towers"), tmp_path / "ft2")


def test_lora_adapters_are_merged_into_a_plain_checkpoint(tiny_clip: Path, pairs: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")  # the `lora` extra (part of `all`, so CI has it)
    import torch

    metrics = finetune(config(f"local:{tiny_clip}", pairs, epochs=3, lora_rank=4, lr=1e-2), tmp_path / "ft")
    assert metrics["best_val_rsum"] > metrics["epochs"][0]["val"]["rsum"] + 30
    best = tmp_path / "ft" / "best"
    assert not (best / "adapter_config.json").exists()  # merged: loads like any checkpoint
    tuned, original = load_encoder(f"local:{best}"), load_encoder(f"local:{tiny_clip}")
    a, b = dict(tuned.model.named_parameters()), dict(original.model.named_parameters())
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and all("attn" in k for k in changed)  # only the adapted projections moved


def test_bad_inputs(tiny_clip: Path, pairs: Path, tmp_path: Path) -> None:
    with pytest.raises(IncompatibleModelError, match="not a transformers checkpoint"):
        finetune(config("builtin", pairs), tmp_path / "a")
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(pairs.read_text().splitlines()[:2]).replace('"image": "', f'"image": "{pairs.parent}/') + "\n")
    with pytest.raises(InputError, match="only 2 training image"):
        finetune(config(f"local:{tiny_clip}", few), tmp_path / "b")
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"image": "gone.png", "captions": ["x"]}\n')
    with pytest.raises(InputError, match="missing"):
        finetune(config(f"local:{tiny_clip}", missing), tmp_path / "c")
    with pytest.raises(InputError, match="model folder not found"):
        finetune(config(f"local:{tmp_path / 'nope'}", pairs), tmp_path / "d")


def test_cli_finetune_and_resume_message(tiny_clip: Path, pairs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from itr.cli.main import app

    args = ["train", "finetune", "--model", f"local:{tiny_clip}", "--data", f"jsonl:{pairs}", "--out",
            str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "8", "--lr", "3e-3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.stderr
    assert "best checkpoint:" in res.stdout and "epoch 1/1" in res.stderr
    res = CliRunner().invoke(app, ["eval", f"jsonl:{pairs}", "--split", "val", "-m", f"local:{tmp_path / 'ft' / 'best'}",
                                   "--json", "-"])
    assert res.exit_code == 0 and json.loads(res.stdout)["n_images"] == 8
    res = CliRunner().invoke(app, [*args[:-6], "--freeze", "legs"])
    assert res.exit_code == 2 and "--freeze must be" in res.stderr
