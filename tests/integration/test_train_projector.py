"""`itr train projector` on real emoji features with the real frozen backbones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import require_emoji_data, require_openclipart_data

from itr.encoders import load_encoder
from itr.encoders.builtin import (
    PACKAGED_PROJECTOR_MULTI,
    PACKAGED_PROJECTOR_V1,
    PACKAGED_PROJECTOR_V2,
    BuiltinProjectorEncoder,
)
from itr.encoders.projector import HeadsConfig
from itr.errors import InputError
from itr.train import ProjectorTrainConfig, train_projector

pytestmark = pytest.mark.builtin


@pytest.fixture(scope="module")
def emoji_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_emoji_data()
    from itr.datasets import build_emoji_dataset

    return build_emoji_dataset(tmp_path_factory.mktemp("emoji"), lang="en", limit=200)


def small(path: Path, **kw: object) -> ProjectorTrainConfig:
    kw.setdefault("held_out", ())
    return ProjectorTrainConfig(data=(f"jsonl:{path}",), epochs=6, batch_size=32,
                                heads=HeadsConfig(hidden=64), **kw)  # type: ignore[arg-type]


def test_every_run_reports_held_out_sets_against_the_bridge(emoji_jsonl: Path, tmp_path: Path) -> None:
    """Heads trained on emoji are judged on GCompris photos, beside builtin:conse on the same
    features (the same figures `itr eval gcompris-photos -m builtin:conse` gives)."""
    from helpers import require_gcompris_data

    require_gcompris_data()
    metrics = train_projector(small(emoji_jsonl, held_out=("gcompris-photos", "gcompris:xx")), tmp_path / "h")
    photos, missing = metrics["held_out"]
    assert photos["dataset"] == "gcompris-photos" and photos["heads"]["n_images"] == photos["bridge"]["n_images"] > 200
    assert photos["bridge"]["rsum"] == pytest.approx(227.7, abs=1.0)  # BENCHMARKS.md, builtin:conse on gcompris-photos
    assert photos["beats_bridge"] is (photos["heads"]["rsum"] > photos["bridge"]["rsum"]
                                      and photos["heads"]["t2i"]["R@1"] > photos["bridge"]["t2i"]["R@1"])
    assert missing["dataset"] == "gcompris:xx" and "no captions in 'xx'" in missing["unavailable"]
    saved = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert saved["held_out"][0]["bridge"]["rsum"] == photos["bridge"]["rsum"]


def test_train_small_projector_load_and_rerun_identically(emoji_jsonl: Path, tmp_path: Path) -> None:
    metrics = train_projector(small(emoji_jsonl), tmp_path / "a")
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"projector.json", "heads.safetensors", "train_config.json", "metrics.json"}
    assert 120 < metrics["n_train_images"] < 200 and len(metrics["curve"]) == 6
    assert metrics["val"] and metrics["test"] and metrics["val"][0]["split"] == "val"
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["epochs"] == 6
    # Trained heads beat the untrained bridge on the held-out split of the same data.
    assert metrics["test"][0]["rsum"] > 0
    enc = load_encoder(f"local:{tmp_path / 'a'}")
    assert isinstance(enc, BuiltinProjectorEncoder) and enc.dim == 384
    assert enc.fingerprint != load_encoder("builtin").fingerprint
    vec = enc.encode_texts(["a red heart"])
    assert vec.shape == (1, 384) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    train_projector(small(emoji_jsonl), tmp_path / "b")  # same seed, same data: same bytes
    assert (tmp_path / "a" / "heads.safetensors").read_bytes() == (tmp_path / "b" / "heads.safetensors").read_bytes()


def test_tiny_or_broken_training_sets_are_refused(emoji_jsonl: Path, tmp_path: Path) -> None:
    rows = emoji_jsonl.read_text().splitlines()
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text("\n".join(rows[:10]).replace(' "images/', f' "{emoji_jsonl.parent}/images/') + "\n")
    with pytest.raises(InputError, match=r"only \d+ training image\(s\).*at least 32"):
        train_projector(small(tiny), tmp_path / "o")
    gone = tmp_path / "gone.jsonl"
    gone.write_text('{"image": "nowhere.png", "captions": ["x"]}\n')
    with pytest.raises(InputError, match="1 of 1 images .* missing"):
        train_projector(small(gone), tmp_path / "o")


@pytest.mark.slow  # 2-3 min; the default recipe's reproduction (below) runs in every CI run
def test_v1_recipe_reproduces_builtin_proj_v1(tmp_path: Path) -> None:
    """One command (`itr train projector --recipe v1`) gives the committed v1 weights' numbers:
    those heads were trained before near-duplicates of evaluation images were left out."""
    require_emoji_data()
    require_openclipart_data()
    metrics = train_projector(ProjectorTrainConfig.v1(), tmp_path / "proj")
    shipped = json.loads((PACKAGED_PROJECTOR_V1 / "metrics.json").read_text())
    assert metrics["best_epoch"] == shipped["best_epoch"]
    for mine, theirs in zip(metrics["test"], shipped["test"], strict=True):
        assert mine["dataset"] == theirs["dataset"]
        assert mine["rsum"] == pytest.approx(theirs["rsum"], abs=3.0)  # float noise across CPUs only


def test_default_recipe_reproduces_the_shipped_builtin(tmp_path: Path) -> None:
    """`itr train projector` with the defaults gives the shipped builtin (v2) heads' numbers: the
    same gate, best epoch, and test and held-out figures."""
    from helpers import require_gcompris_data, require_tuxpaint_data

    require_emoji_data()
    require_openclipart_data()
    require_tuxpaint_data()
    require_gcompris_data()
    metrics = train_projector(ProjectorTrainConfig(), tmp_path / "proj")
    shipped = json.loads((PACKAGED_PROJECTOR_V2 / "metrics.json").read_text())
    assert metrics["gate_selection"]["gate"] == shipped["gate_selection"]["gate"]
    assert metrics["best_epoch"] == shipped["best_epoch"]
    assert metrics["near_duplicates_dropped"] == shipped["near_duplicates_dropped"]
    for mine, theirs in zip(metrics["test"] + metrics["held_out"], shipped["test"] + shipped["held_out"], strict=True):
        assert mine["dataset"] == theirs["dataset"]
        mine, theirs = mine.get("heads", mine), theirs.get("heads", theirs)
        assert mine["rsum"] == pytest.approx(theirs["rsum"], abs=3.0)  # float noise across CPUs only


def test_gated_heads_choose_their_gate_leaving_one_source_out(emoji_jsonl: Path, tmp_path: Path) -> None:
    """Two sources: each is left out once to choose the gate; the saved model is the 768-d gated
    one, and an image unlike anything trained on gets less of the heads than a training image."""
    import torch
    from PIL import Image

    from itr.encoders.projector import HeadsConfig
    from itr.train.projector import GATE_GRID

    rows = emoji_jsonl.read_text().splitlines()
    root = f'"{emoji_jsonl.parent}/images/'
    for name, part in (("a", rows[0::2]), ("b", rows[1::2])):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(r.replace('"images/', root) for r in part) + "\n")
    config = ProjectorTrainConfig(data=(f"jsonl:{tmp_path / 'a.jsonl'}", f"jsonl:{tmp_path / 'b.jsonl'}"), epochs=4,
                                  batch_size=32, heads=HeadsConfig(hidden=64, bridge="v2", gate=GATE_GRID[0]),
                                  held_out=())
    metrics = train_projector(config, tmp_path / "g")
    sel = metrics["gate_selection"]
    assert [f["left_out"] for f in sel["folds"]] == [s for s in config.data]
    assert tuple(sel["gate"]) in GATE_GRID and len(sel["mean_left_out_val_rsum"]) == len(GATE_GRID)
    best = max(sel["mean_left_out_val_rsum"].values())
    assert sel["mean_left_out_val_rsum"][f"c={sel['gate'][0]} tau={sel['gate'][1]}"] == best
    enc = load_encoder(f"local:{tmp_path / 'g'}")
    assert isinstance(enc, BuiltinProjectorEncoder) and enc.dim == 768
    assert tuple(enc.heads_config.gate) == tuple(sel["gate"])
    emb = enc.encode_texts(["a red heart", "ein rotes Herz"])
    assert emb.shape == (2, 768) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    first = json.loads(rows[0])
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    trained = Image.open(emoji_jsonl.parent / first["image"]).convert("RGB")
    pixels = torch.from_numpy(np.stack([enc.preprocess_image(im) for im in (trained, noise)]))
    pooled, _ = enc.image_features(pixels)
    g = enc.heads.gate_weight(pooled).squeeze(-1)
    assert g[0] > g[1]
    assert enc.encode_images([trained, noise]).shape == (2, 768)


@pytest.mark.slow  # ~7 min on 2 cores; run with -m slow (the default recipe's reproduction runs in CI)
def test_multi_recipe_reproduces_builtin_multi(tmp_path: Path) -> None:
    """`itr train projector --recipe multi` gives the shipped builtin:multi heads' numbers."""
    from helpers import require_gcompris_data, require_tuxpaint_data

    require_emoji_data()
    require_openclipart_data()
    require_tuxpaint_data()
    require_gcompris_data()
    metrics = train_projector(ProjectorTrainConfig.multi(), tmp_path / "multi")
    shipped = json.loads((PACKAGED_PROJECTOR_MULTI / "metrics.json").read_text())
    assert metrics["gate_selection"]["gate"] == shipped["gate_selection"]["gate"]
    assert metrics["best_epoch"] == shipped["best_epoch"]
    for mine, theirs in zip(metrics["test"] + metrics["held_out"], shipped["test"] + shipped["held_out"], strict=True):
        assert mine["dataset"] == theirs["dataset"]
        mine, theirs = mine.get("heads", mine), theirs.get("heads", theirs)
        assert mine["rsum"] == pytest.approx(theirs["rsum"], abs=3.0)
