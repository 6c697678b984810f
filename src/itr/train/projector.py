"""``itr train projector``: align the built-in model's frozen encoders with small trained heads.

Recipe ("From Unimodal to Multimodal: Scaling up Projectors to Align Modalities", 2024, at toy
scale): frozen EfficientNet-Lite and a frozen text encoder (MiniLM, or the multilingual USE-m with
``HeadsConfig.text_model="use-m"``), features cached once; an image MLP (plus the ConSE
bridge as a residual) and an optional residual text MLP trained with symmetric InfoNCE and a
learnable temperature. Each step pairs every image of the batch with one of its captions drawn at
random (any training language), so one image never appears twice in a batch (no false negatives).
The epoch with the best mean validation RSUM is kept.

Every run also reports ``held_out`` sets that no head is ever trained on (by default GCompris' real
photos and drawings), for the heads and for the shipped training-free bridge (``builtin:conse``):
a gain that exists only on the training domains shows up there as a loss.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, atomic_write_bytes
from ..encoders.builtin import (
    CONSE_V2,
    BuiltinConseEncoder,
    bridge_config,
    conse_vectors,
    cupl_classes_file,
)
from ..encoders.projector import HeadsConfig, build_heads, save_projector
from ..errors import InputError
from ..eval.datasets import EvalDataset
from ..eval.runner import EncodedDataset, EvalOptions, evaluate_encoded, package_versions
from .data import TRAIN_SPLIT, VAL_SPLIT, load_training_set
from .dedup import DEFAULT_MAX_DISTANCE, near_duplicates, perceptual_hashes
from .features import image_features, split_image_features, text_features
from .losses import info_nce

MIN_TRAIN_IMAGES = 32


GATE_GRID = ((0.3, 0.02), (0.3, 0.05), (0.35, 0.02), (0.35, 0.05), (0.4, 0.02), (0.4, 0.05))
"""(c, tau) pairs the gate is chosen from (closeness of the test splits' images to the training
images: 0.35-0.8; of GCompris' real photos: 0.2-0.4; benchmarks/heads_gate.py)."""


USE_M_LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pl", "pt", "ru", "ja", "ko", "zh", "zh-TW", "ar", "tr", "th")
"""The 16 languages of the multilingual Universal Sentence Encoder v3 (``builtin:multi``)."""
USE_M_EMOJI_LANGS = tuple({"zh-TW": "zh_Hant"}.get(lg, lg) for lg in USE_M_LANGUAGES)  # CLDR locale names
USE_M_TUXPAINT_LANGS = tuple({"zh": "zh_CN", "zh-TW": "zh_TW"}.get(lg, lg) for lg in USE_M_LANGUAGES)  # gettext's


@dataclass(frozen=True, kw_only=True)
class ProjectorTrainConfig:
    """Everything that determines a projector run (written next to the weights as ``train_config.json``).

    The defaults are the v2 recipe (``builtin`` = ``builtin:proj-v2``): three sources, the v2
    bridge and the gate, on MiniLM. ``ProjectorTrainConfig.multi()`` is ``builtin:multi``'s (the
    same on USE-m, captions in its 16 languages), ``v1()`` the first heads' (``builtin:proj-v1``)."""

    data: tuple[str, ...] = ("emoji:en,fr,de,es", "openclipart", "tuxpaint:en,fr,de,es")
    heads: HeadsConfig = field(default_factory=lambda: HeadsConfig(bridge="v2", gate=GATE_GRID[0]))
    gate_grid: tuple[tuple[float, float], ...] = GATE_GRID
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    seed: int = 0
    threads: int = 2  # fixed so that a rerun on another machine does the same arithmetic
    held_out: tuple[str, ...] = ("gcompris-photos", "gcompris-drawings")  # reported, never trained on
    dedup_distance: int = DEFAULT_MAX_DISTANCE  # pHash bits; -1 keeps near-duplicates of evaluation images

    @classmethod
    def multi(cls) -> ProjectorTrainConfig:
        """``builtin:multi``: the same on the multilingual USE-m text model, with the emoji and Tux
        Paint captions in every one of USE-m's 16 languages."""
        return cls(data=(f"emoji:{','.join(USE_M_EMOJI_LANGS)}", "openclipart",
                         f"tuxpaint:{','.join(USE_M_TUXPAINT_LANGS)}"),
                   heads=HeadsConfig(bridge="v2", gate=GATE_GRID[0], text_model="use-m"))

    @classmethod
    def v1(cls) -> ProjectorTrainConfig:
        """The recipe of the first shipped heads: two sources, the v1 bridge, no gate, no de-duplication."""
        return cls(data=("emoji:en,fr,de,es", "openclipart"), heads=HeadsConfig(), dedup_distance=-1)


@dataclass
class FeaturePart:
    """One dataset's images and captions, as frozen-encoder features."""

    dataset: EvalDataset
    images: Any  # torch (n, 2280)
    texts: Any  # torch (m, 384)
    text_image: np.ndarray


def feature_part(base: BuiltinConseEncoder, ds: EvalDataset, progress: ProgressFn | None) -> FeaturePart:
    import torch

    table = ds.texts()
    imgs = image_features(base, ds.image_paths, progress=progress, what=f"images of {ds.name}")
    txts = text_features(base, table.texts)
    return FeaturePart(ds, torch.from_numpy(imgs), torch.from_numpy(txts), table.image)


def load_parts(base: BuiltinConseEncoder, specs: tuple[str, ...], split: str,
               progress: ProgressFn | None) -> list[FeaturePart]:
    """The ``split`` of every training spec that has one, as features (built-in sets are split-checked)."""
    return [feature_part(base, ds, progress) for ds in
            (load_training_set(spec, split=split) for spec in specs) if ds is not None]


class CaptionSampler:
    """Draws one caption per image: each step pairs every image with one of its captions at random,
    so an image never appears twice in a batch (no false negatives)."""

    def __init__(self, parts: list[FeaturePart]) -> None:
        offsets = np.cumsum([0] + [len(p.images) for p in parts])
        text_image = np.concatenate([p.text_image + off for p, off in zip(parts, offsets, strict=False)])
        self.n_images = int(offsets[-1])
        self._order = np.argsort(text_image, kind="stable")
        self._starts = np.searchsorted(text_image[self._order], np.arange(self.n_images))
        self._counts = np.bincount(text_image, minlength=self.n_images)

    def pick(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Caption rows (into the concatenated captions) for these image rows."""
        return self._order[self._starts[images] + (rng.random(len(images)) * self._counts[images]).astype(np.int64)]


def without_rows(part: FeaturePart, drop: np.ndarray) -> FeaturePart:
    """``part`` without the images where ``drop`` is true, and without their captions."""
    import torch

    keep = np.flatnonzero(~drop)
    new_index = np.full(len(drop), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    text_keep = np.flatnonzero(~drop[part.text_image])
    return FeaturePart(part.dataset, part.images[torch.from_numpy(keep)], part.texts[torch.from_numpy(text_keep)],
                       new_index[part.text_image[text_keep]])


def evaluation_image_paths(specs: tuple[str, ...], held_out: tuple[str, ...]) -> list[str]:
    """Every image a run evaluates on: the val and test splits of its training specs, and the
    held-out sets (those that cannot be read are skipped here and reported as unavailable later)."""
    from ..eval import load_eval_dataset

    paths: list[str] = []
    for spec in specs:
        for split in (VAL_SPLIT, "test"):
            ds = load_training_set(spec, split=split)
            paths += list(ds.image_paths) if ds is not None else []
    for spec in held_out:
        try:
            paths += list(load_eval_dataset(spec).image_paths)
        except (InputError, OSError):
            continue
    return list(dict.fromkeys(paths))


def drop_near_duplicates(parts: list[FeaturePart], eval_paths: list[str], max_distance: int,
                         progress: ProgressFn | None = None) -> tuple[list[FeaturePart], dict[str, int]]:
    """Training parts without images within ``max_distance`` pHash bits of any evaluation image;
    and how many each source lost (its spec -> count)."""
    eval_hashes = perceptual_hashes(eval_paths, progress=progress)
    out, dropped = [], {}
    for part in parts:
        drop = near_duplicates(perceptual_hashes(list(part.dataset.image_paths), progress=progress), eval_hashes,
                               max_distance)
        dropped[part.dataset.name] = int(drop.sum())
        out.append(without_rows(part, drop) if drop.any() else part)
    return out, dropped


def _embed(heads: Any, base: BuiltinConseEncoder, part: FeaturePart, *, full: bool = True,
           gate: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a part: the model's (``full``: gated with the bridge where the heads have a
    gate; ``gate`` overrides its setting) or the heads' alone."""
    import torch

    was_training = heads.training
    heads.eval()
    with torch.no_grad():
        pooled, logits = split_image_features(part.images)
        conse = base.conse_vectors(logits)
        if full:
            img, txt = heads.embed_image(pooled, conse, gate).numpy(), heads.embed_text(part.texts).numpy()
        else:
            img, txt = heads.image(pooled, conse).numpy(), heads.text(part.texts).numpy()
    heads.train(was_training)
    return img, txt


def _report(heads: Any, base: BuiltinConseEncoder, part: FeaturePart, *, full: bool = True,
            gate: tuple[float, float] | None = None) -> dict[str, Any]:
    img, txt = _embed(heads, base, part, full=full, gate=gate)
    encoded = EncodedDataset(part.dataset, {"spec": "training", "fingerprint": "training"}, img, txt, 0.0, 0.0)
    r = evaluate_encoded(encoded, options=EvalOptions(latency_queries=1))
    keep = ("dataset", "split", "n_images", "n_texts", "i2t", "t2i", "rsum", "per_language", "mrv")
    return {k: r[k] for k in keep if k in r}


def bridge_spec(base: BuiltinConseEncoder) -> str:
    """The shipped training-free bridge in the heads' text space: what they have to beat."""
    # v2 settings, without the WordNet class prior that builtin:conse (v3) adds: the bridge these
    # heads were trained from, on the same features
    return "builtin:conse-multi" if base.config.text_model == "use-m" else "builtin:conse-v2"


def _bridge_report(base: BuiltinConseEncoder, part: FeaturePart) -> dict[str, Any]:
    """``_report`` for the shipped training-free bridge (``bridge_spec``: v2 settings, in the text
    model's space) on the same features: what a trained model has to beat on data it never saw."""
    import torch

    classes = torch.from_numpy(np.load(cupl_classes_file(base.config.text_model), allow_pickle=False))
    with torch.no_grad():
        _, logits = split_image_features(part.images)
        img = conse_vectors(logits, classes, CONSE_V2.top_k, CONSE_V2.temperature).numpy()
        txt = torch.nn.functional.normalize(part.texts, dim=-1).numpy()
    encoded = EncodedDataset(part.dataset, {"spec": "bridge", "fingerprint": "bridge"}, img, txt, 0.0, 0.0)
    r = evaluate_encoded(encoded, options=EvalOptions(latency_queries=1))
    return {k: r[k] for k in ("dataset", "n_images", "i2t", "t2i", "rsum") if k in r}


def held_out_reports(heads: Any, base: BuiltinConseEncoder, specs: tuple[str, ...],
                     progress: ProgressFn | None) -> list[dict[str, Any]]:
    """Heads against ``builtin:conse`` on each held-out set: ``{"dataset", "heads", "bridge",
    "beats_bridge"}``, or ``{"dataset", "unavailable": reason}`` where the set cannot be read."""
    from ..eval import load_eval_dataset

    out: list[dict[str, Any]] = []
    for spec in specs:
        try:
            part = feature_part(base, load_eval_dataset(spec, progress=progress), progress)
        except (InputError, OSError) as exc:
            out.append({"dataset": spec, "unavailable": str(exc).splitlines()[0]})
            continue
        mine, bridge = _report(heads, base, part), _bridge_report(base, part)
        out.append({"dataset": spec, "heads": mine, "bridge": bridge, "bridge_spec": bridge_spec(base),
                    "beats_bridge": mine["rsum"] > bridge["rsum"] and mine["t2i"]["R@1"] > bridge["t2i"]["R@1"]})
    return out


def _fit(hc: HeadsConfig, base: BuiltinConseEncoder, parts: list[FeaturePart], val_parts: list[FeaturePart],
         config: ProjectorTrainConfig, log: Any = None, what: str = "") -> tuple[Any, int, list[dict[str, Any]]]:
    """Train heads on ``parts``; the epoch with the best mean validation RSUM of the heads (alone)
    on ``val_parts`` is kept. Returns ``(heads, best_epoch, curve)``."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images = torch.cat([p.images for p in parts])
    texts = torch.cat([p.texts for p in parts])
    sampler = CaptionSampler(parts)
    n_images = len(images)
    heads = build_heads(hc)
    heads.train()
    batch = min(config.batch_size, n_images)
    steps_per_epoch = max(1, n_images // batch)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=config.warmup_fraction)
    curve: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    for epoch in range(1, config.epochs + 1):
        perm = rng.permutation(n_images)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * batch : (step + 1) * batch]
            pick = sampler.pick(idx, rng)
            pooled, logits = split_image_features(images[idx])
            loss = info_nce(heads.image(pooled, base.conse_vectors(logits)), heads.text(texts[pick]), heads.logit_scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        val = [_report(heads, base, p, full=False)["rsum"] for p in val_parts]
        score = float(np.mean(val)) if val else -float(epoch)  # no validation data: keep the last epoch
        curve.append({"epoch": epoch, "loss": total / steps_per_epoch, "val_rsum": score if val else None,
                      "temperature": 1.0 / heads.logit_scale.exp().item()})
        if best is None or score > best[0]:
            best = (score, epoch, copy.deepcopy(heads.state_dict()))
        if log:
            log(f"{what}epoch {epoch}/{config.epochs}: loss {total / steps_per_epoch:.3f}"
                + (f", val RSUM {score:.1f}" if val else ""))
    assert best is not None
    heads.load_state_dict(best[2])
    if hc.gate is not None:
        pooled, _ = split_image_features(images)
        heads.set_prototypes(pooled, torch.Generator().manual_seed(config.seed))
    heads.eval()
    return heads, best[1], curve


def choose_gate(hc: HeadsConfig, base: BuiltinConseEncoder, train_parts: list[FeaturePart],
                val_parts: list[FeaturePart], config: ProjectorTrainConfig, log: Any = None) -> dict[str, Any]:
    """The gate's ``(c, tau)`` by leave-one-source-out: for each training source, heads trained on the
    others are scored on its validation split (data they never saw) with every gate of
    ``config.gate_grid``; the best mean over sources wins. Sources without a validation split are
    trained on but cannot be left out; with fewer than two that can, the first of the grid is kept."""
    by_name = {p.dataset.name: p for p in val_parts}
    folds = [p for p in train_parts if p.dataset.name in by_name]
    grid = [tuple(g) for g in config.gate_grid]
    if len(folds) < 2 or len(train_parts) < 2:
        return {"gate": list(grid[0]), "folds": [], "note": "fewer than two sources with a validation split: "
                                                             "no leave-one-source-out, first gate of the grid kept"}
    scores: dict[tuple[float, float], list[float]] = {g: [] for g in grid}
    report: list[dict[str, Any]] = []
    for left_out in folds:
        others = [p for p in train_parts if p is not left_out]
        heads, _, _ = _fit(hc, base, others, [v for v in val_parts if v.dataset.name != left_out.dataset.name], config,
                           log, what=f"without {left_out.dataset.name}: ")
        target = by_name[left_out.dataset.name]
        fold = {"left_out": left_out.dataset.name,
                "heads_alone": _report(heads, base, target, full=False)["rsum"],
                "bridge": _bridge_report(base, target)["rsum"], "gates": {}}
        for g in grid:
            rsum = _report(heads, base, target, gate=g)["rsum"]
            scores[g].append(rsum)
            fold["gates"][f"c={g[0]} tau={g[1]}"] = rsum
        report.append(fold)
    best = max(grid, key=lambda g: float(np.mean(scores[g])))
    return {"gate": list(best), "folds": report,
            "mean_left_out_val_rsum": {f"c={g[0]} tau={g[1]}": float(np.mean(v)) for g, v in scores.items()}}


def train_projector(config: ProjectorTrainConfig, out: str | Path, *, progress: ProgressFn | None = None,
                    log: Any = None) -> dict[str, Any]:
    """Train heads, write them to ``out`` (loadable as ``local:OUT``), return the run's metrics.

    ``log(message)`` receives one line per epoch. Writes ``projector.json``, ``heads.safetensors``,
    ``train_config.json`` and ``metrics.json`` (validation curve, best epoch, gate selection, val,
    test and held-out reports).
    """
    import torch

    if config.epochs < 1 or config.batch_size < 2:
        raise InputError("epochs must be >= 1 and batch size >= 2")
    torch.set_num_threads(config.threads)
    hc = config.heads
    base = BuiltinConseEncoder("builtin:conse", bridge_config(hc))
    started = time.perf_counter()
    train_parts = load_parts(base, config.data, TRAIN_SPLIT, progress)
    dropped: dict[str, int] = {}
    if config.dedup_distance >= 0:
        train_parts, dropped = drop_near_duplicates(
            train_parts, evaluation_image_paths(config.data, config.held_out), config.dedup_distance, progress)
        if log and any(dropped.values()):
            log("dropped training images that nearly duplicate evaluation images: "
                + ", ".join(f"{n} of {k}" for k, n in dropped.items() if n))
    val_parts = load_parts(base, config.data, VAL_SPLIT, progress)
    n_images = sum(len(p.images) for p in train_parts)
    if n_images < MIN_TRAIN_IMAGES:
        raise InputError(f"only {n_images} training image(s) in {', '.join(config.data)}; "
                         f"a projector needs at least {MIN_TRAIN_IMAGES} (more like thousands)")
    feature_seconds = time.perf_counter() - started

    started = time.perf_counter()
    gate_selection = None
    if hc.gate is not None:
        gate_selection = choose_gate(hc, base, train_parts, val_parts, config, log)
        hc = replace(hc, gate=tuple(gate_selection["gate"]))
        if log:
            log(f"gate chosen on leave-one-source-out validation: c={hc.gate[0]}, tau={hc.gate[1]}")
    heads, best_epoch, curve = _fit(hc, base, train_parts, val_parts, config, log)
    train_seconds = time.perf_counter() - started

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trained_with = {"data": list(config.data), "seed": config.seed, "best_epoch": best_epoch}
    save_projector(out, heads, hc, trained_with=trained_with)
    test_parts = load_parts(base, config.data, "test", progress)
    metrics = {
        "best_epoch": best_epoch, "curve": curve, "gate_selection": gate_selection,
        "n_train_images": n_images, "n_train_texts": sum(len(p.texts) for p in train_parts),
        "near_duplicates_dropped": dropped,
        "feature_seconds": feature_seconds, "train_seconds": train_seconds,
        "val": [_report(heads, base, p) for p in val_parts],
        "test": [_report(heads, base, p) for p in test_parts],
        "held_out": held_out_reports(heads, base, config.held_out, progress),
        "versions": package_versions(), "machine": platform.platform(),
    }
    config_json = json.dumps(asdict(config), indent=2, sort_keys=True, default=list) + "\n"
    atomic_write_bytes(out / "train_config.json", config_json.encode())
    atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
    return metrics
