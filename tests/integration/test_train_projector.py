"""`itr train projector` on real emoji features with the real frozen backbones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import require_emoji_data, require_openclipart_data

from itr.encoders import load_encoder
from itr.encoders.builtin import PACKAGED_PROJECTOR, BuiltinProjectorEncoder
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


def test_default_recipe_reproduces_the_shipped_builtin(tmp_path: Path) -> None:
    """One command (`itr train projector --dedup-distance -1`) gives the committed weights' numbers:
    the v1 heads were trained before near-duplicates of evaluation images were left out."""
    require_emoji_data()
    require_openclipart_data()
    metrics = train_projector(ProjectorTrainConfig(dedup_distance=-1), tmp_path / "proj")
    shipped = json.loads((PACKAGED_PROJECTOR / "metrics.json").read_text())
    assert metrics["best_epoch"] == shipped["best_epoch"]
    for mine, theirs in zip(metrics["test"], shipped["test"], strict=True):
        assert mine["dataset"] == theirs["dataset"]
        assert mine["rsum"] == pytest.approx(theirs["rsum"], abs=3.0)  # float noise across CPUs only
