"""Fine-grained and compositional matching: small groups of images and captions that differ in one
detail, scored by whether the model prefers the right pairing within each group.

Recall@K over a whole gallery hides whether a model can tell "woman biking" from "man biking"; these
sets ask exactly that. A *group* holds a few images and captions; each caption belongs to one of
the group's images, or to none (a hard negative, as in SugarCrepe). Per group and query:

- **i2t accuracy** (an image query): its own caption scores strictly above every other caption of
  the group (SugarCrepe's accuracy; Winoground's per-image "text" condition);
- **t2i accuracy** (a caption query, in groups of two or more images): its own image scores
  strictly above the group's other images;
- **text / image / group score** (Winoground): every image query of the group right; every caption
  query right; both.

Ties count as wrong (a model giving the group identical vectors scores 0, not chance). **Chance** is
stated next to each figure: exact for the accuracies and the text/image scores (random scores make
each query's condition independent), and from 2,000 seeded random score draws for the group score.

Sets (``load_matching_set``): ``emoji-attributes[:LANG]`` (built offline from Noto emoji and CLDR),
``sugarcrepe:FOLDER`` (SugarCrepe's ``<kind>.json`` files, images from ``--images-root``, COCO
val2017) and ``winoground:FOLDER`` (``examples.jsonl`` and ``images/``).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, display_path
from ..encoders.base import Encoder
from ..encoders.pipeline import encode_image_files
from ..errors import InputError, UnknownNameError
from .metrics import deterministic_scores

SUGARCREPE_KINDS = ("replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att", "add_obj", "add_att")
GROUP_CHANCE_DRAWS = 2000


@dataclass(frozen=True, slots=True)
class MatchGroup:
    """Positions into the set's images and texts; ``owner[j]`` is the position in ``images`` of the
    image text ``texts[j]`` describes, or -1 for a caption that describes none of them."""

    kind: str
    images: tuple[int, ...]
    texts: tuple[int, ...]
    owner: tuple[int, ...]
    key: str = ""
    trained_on: bool = False  # the built-in heads saw one of its images in training


@dataclass(frozen=True)
class MatchingSet:
    name: str
    image_paths: tuple[str, ...]
    texts: tuple[str, ...]
    groups: tuple[MatchGroup, ...]
    source: dict[str, Any] = field(default_factory=dict)


def _group_outcomes(scores: np.ndarray, owner: np.ndarray) -> tuple[list[bool], list[bool]]:
    """``scores``: (n_images, n_texts) of one group. Per image query and per caption query: right?"""
    image_hits = []
    for i in range(scores.shape[0]):
        own = owner == i
        if not own.any():
            continue
        best_own = scores[i, own].max()
        image_hits.append(bool((~own).sum() == 0 or best_own > scores[i, ~own].max()))
    text_hits = []
    if scores.shape[0] >= 2:
        for j in np.flatnonzero(owner >= 0):
            others = np.delete(scores[:, j], owner[j])
            text_hits.append(bool(scores[owner[j], j] > others.max()))
    return image_hits, text_hits


def _chance(groups: Sequence[MatchGroup], seed: int) -> dict[str, float | None]:
    """Expected figures of a model that scores at random (see the module docstring)."""
    i2t, t2i, text_score, image_score = [], [], [], []
    for g in groups:
        owner = np.asarray(g.owner)
        n_texts = len(g.texts)
        per_image = [np.sum(owner == i) / n_texts for i in range(len(g.images)) if np.any(owner == i)]
        i2t += per_image
        text_score.append(math.prod(per_image))
        if len(g.images) >= 2:
            per_text = [1.0 / len(g.images)] * int(np.sum(owner >= 0))
            t2i += per_text
            image_score.append(math.prod(per_text))
    # Group score: draw random scores once per group shape (groups of one kind mostly share one).
    by_shape: dict[tuple[int, tuple[int, ...]], float] = {}
    group_hits = []
    for g in groups:
        if len(g.images) < 2:
            continue
        shape = (len(g.images), g.owner)
        if shape not in by_shape:
            rng = np.random.default_rng(seed)
            owner = np.asarray(g.owner)
            wins = 0
            for _ in range(GROUP_CHANCE_DRAWS):
                ih, th = _group_outcomes(rng.random((len(g.images), len(g.texts))), owner)
                wins += all(ih) and all(th)
            by_shape[shape] = wins / GROUP_CHANCE_DRAWS
        group_hits.append(by_shape[shape])

    def pct(values: list[float]) -> float | None:
        return round(100.0 * float(np.mean(values)), 2) if values else None

    return {"i2t_accuracy": pct(i2t), "t2i_accuracy": pct(t2i), "text_score": pct(text_score),
            "image_score": pct(image_score), "group_score": pct(group_hits)}


def score_groups(image_emb: np.ndarray, text_emb: np.ndarray, groups: Sequence[MatchGroup], *,
                 seed: int = 0) -> dict[str, Any]:
    """Figures per kind and their mean over kinds, each with its chance level (percent)."""
    by_kind: dict[str, list[MatchGroup]] = defaultdict(list)
    for g in groups:
        by_kind[g.kind].append(g)
    kinds: dict[str, Any] = {}
    for kind, members in by_kind.items():
        i2t: list[bool] = []
        t2i: list[bool] = []
        text_score, image_score, group_score = [], [], []
        for g in members:
            scores = deterministic_scores(image_emb[list(g.images)], text_emb[list(g.texts)])
            ih, th = _group_outcomes(scores, np.asarray(g.owner))
            i2t += ih
            t2i += th
            text_score.append(all(ih))
            if len(g.images) >= 2:
                image_score.append(all(th))
                group_score.append(all(ih) and all(th))

        def pct(values: list[bool]) -> float | None:
            return round(100.0 * float(np.mean(values)), 2) if values else None

        kinds[kind] = {"groups": len(members), "image_queries": len(i2t), "text_queries": len(t2i),
                       "groups_with_trained_images": sum(g.trained_on for g in members),
                       "i2t_accuracy": pct(i2t), "t2i_accuracy": pct(t2i), "text_score": pct(text_score),
                       "image_score": pct(image_score), "group_score": pct(group_score),
                       "chance": _chance(members, seed)}
    metrics = ("i2t_accuracy", "t2i_accuracy", "text_score", "image_score", "group_score")

    def mean(key: str, chance: bool = False) -> float | None:
        values = [(k["chance"] if chance else k)[key] for k in kinds.values()]
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 2) if values else None

    overall = {m: mean(m) for m in metrics} | {"chance": {m: mean(m, chance=True) for m in metrics}}
    return {"kinds": kinds, "overall": overall}


def run_matching(dataset: MatchingSet, encoder: Encoder, *, batch_size: int = 32, workers: int | None = None,
                 skip_missing: bool = False, seed: int = 0, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Encode the set's images (decoded as the reference loaders do) and texts, and score its groups."""
    from .runner import machine, package_versions

    paths = dataset.image_paths
    total = len(paths) + len(dataset.texts)
    chunks, failed, done = [], [], 0
    start = time.perf_counter()
    for batch in encode_image_files(encoder, paths, batch_size=batch_size, workers=workers, draft=False,
                                    exif_transpose=False):
        chunks.append((batch.indices, batch.embeddings))
        failed += batch.errors
        done += len(batch.indices) + len(batch.errors)
        if progress:
            progress(done, total)
    image_seconds = time.perf_counter() - start
    if failed and not skip_missing:
        raise InputError(f"{len(failed)} of {len(paths)} images of {dataset.name} could not be read "
                         f"(first: {failed[0][1]}); fix them, or pass --skip-missing to score the other groups")
    image_emb = np.zeros((len(paths), encoder.dim), dtype=np.float32)
    for indices, emb in chunks:
        image_emb[indices] = emb
    bad = {i for i, _ in failed}
    groups = [g for g in dataset.groups if not bad.intersection(g.images)]
    if not groups:
        raise InputError(f"no group of {dataset.name} has all its images readable")
    text_emb = np.concatenate([encoder.encode_texts(list(dataset.texts[i : i + 256]))
                               for i in range(0, len(dataset.texts), 256)])
    if progress:
        progress(total, total)
    describe = encoder.describe()
    return {"dataset": dataset.name, "task": "matching", "model": describe["spec"],
            "n_groups": len(groups), "n_images": len(paths), "n_texts": len(dataset.texts),
            "skipped_groups": len(dataset.groups) - len(groups),
            **score_groups(image_emb, text_emb, groups, seed=seed),
            "tie_rule": "a tie is wrong", "image_encode_seconds": image_seconds,
            "model_fingerprint": describe["fingerprint"], "dataset_source": dataset.source, "seed": seed,
            "versions": package_versions(), "machine": machine()}


# ---- loaders ------------------------------------------------------------------------------------

class _Builder:
    """Collects unique images and texts and the groups over them."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {}
        self.texts: dict[str, int] = {}
        self.groups: list[MatchGroup] = []

    def add(self, kind: str, images: Sequence[str], texts: Sequence[str], owner: Sequence[int], *,
            key: str = "", trained_on: bool = False) -> None:
        ii = tuple(self.images.setdefault(p, len(self.images)) for p in images)
        tt = tuple(self.texts.setdefault(t, len(self.texts)) for t in texts)
        self.groups.append(MatchGroup(kind, ii, tt, tuple(owner), key, trained_on))

    def build(self, name: str, source: dict[str, Any]) -> MatchingSet:
        if not self.groups:
            raise InputError(f"{name}: no group found")
        return MatchingSet(name, tuple(self.images), tuple(self.texts), tuple(self.groups), source)


def _missing_images(name: str, paths: Sequence[str], skip_missing: bool) -> set[str]:
    missing = {p for p in paths if not Path(p).is_file()}
    if missing and not skip_missing:
        first = display_path(sorted(missing)[0])
        raise InputError(f"{len(missing)} of {len(set(paths))} images of {name} are missing (first: {first}); "
                         "fix the paths or --images-root, or pass --skip-missing")
    return missing


def load_emoji_attributes(spec: str, arg: str, skip_missing: bool = False,
                          progress: ProgressFn | None = None) -> MatchingSet:
    from ..datasets.emoji_attributes import ATTRIBUTES_VERSION, attributes_file, build_emoji_attributes
    from .datasets import _builtin_dir, _sha256

    lang = arg or "en"
    folder = _builtin_dir("emoji-attributes")
    path = folder / attributes_file(lang)
    if not path.is_file():
        build_emoji_attributes(folder, lang=lang, progress=progress)
    data = json.loads(path.read_text(encoding="utf-8"))
    b = _Builder()
    for g in data["groups"]:
        items = g["items"]
        b.add(g["kind"], [str(folder / it["image"]) for it in items], [it["caption"] for it in items],
              range(len(items)), key=g["key"], trained_on=any(it["emoji_split"] == "train" for it in items))
    return b.build(spec, {"builder": f"itr.datasets.emoji_attributes v{ATTRIBUTES_VERSION}",
                          "file": str(path), "sha256": _sha256(path), **data["source"]})


def load_sugarcrepe(spec: str, arg: str, images_root: str | None, skip_missing: bool = False) -> MatchingSet:
    """SugarCrepe's public files: ``FOLDER/<kind>.json`` = ``{"<id>": {"filename", "caption",
    "negative_caption"}}`` for the 7 kinds (those present are read); images in ``--images-root``
    (COCO val2017), else ``FOLDER/val2017``."""
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise InputError(f"SugarCrepe folder not found: {display_path(folder)}")
    root = Path(images_root) if images_root else folder / "val2017"
    b = _Builder()
    files = {}
    for kind in SUGARCREPE_KINDS:
        path = folder / f"{kind}.json"
        if not path.is_file():
            continue
        files[kind] = str(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{display_path(path)}: not readable JSON ({exc})") from None
        if not isinstance(entries, dict):
            raise InputError(f"{display_path(path)}: expected an object of entries keyed by id")
        paths = []
        for key, e in entries.items():
            if not (isinstance(e, dict) and all(isinstance(e.get(f), str) and e.get(f) for f in
                                                ("filename", "caption", "negative_caption"))):
                raise InputError(f"{display_path(path)}: entry '{key}' needs non-empty filename, caption "
                                 "and negative_caption")
            paths.append(str(root / e["filename"]))
        missing = _missing_images(spec, paths, skip_missing)
        for (key, e), p in zip(entries.items(), paths, strict=True):
            if p not in missing:
                b.add(kind, [p], [e["caption"], e["negative_caption"]], [0, -1], key=key)
    if not files:
        raise InputError(f"{display_path(folder)}: no SugarCrepe file ({', '.join(k + '.json' for k in SUGARCREPE_KINDS)})")
    return b.build(spec, {"format": "sugarcrepe", "files": files, "images_root": str(root)})


def load_winoground(spec: str, arg: str, images_root: str | None, skip_missing: bool = False) -> MatchingSet:
    """Winoground's public files: ``FOLDER/examples.jsonl`` (``id``, ``image_0``, ``image_1``,
    ``caption_0``, ``caption_1``, ``collapsed_tag``) and ``FOLDER/images/<image>.png``."""
    folder = Path(arg).expanduser()
    path = folder / "examples.jsonl" if folder.is_dir() else folder
    if not path.is_file():
        raise InputError(f"Winoground examples not found: {display_path(path)}")
    root = Path(images_root) if images_root else path.parent / "images"
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{display_path(path)}:{n}: not JSON ({exc.msg})") from None
            fields = ("image_0", "image_1", "caption_0", "caption_1")
            if not isinstance(e, dict) or not all(isinstance(e.get(f), str) and e.get(f) for f in fields):
                raise InputError(f"{display_path(path)}:{n}: needs non-empty {', '.join(fields)}")
            rows.append(e)
    def image(name: str) -> str:
        return str(root / (name if Path(name).suffix else f"{name}.png"))

    missing = _missing_images(spec, [image(e[f]) for e in rows for f in ("image_0", "image_1")], skip_missing)
    b = _Builder()
    for e in rows:
        imgs = [image(e["image_0"]), image(e["image_1"])]
        if missing.intersection(imgs):
            continue
        b.add(str(e.get("collapsed_tag") or "all"), imgs, [e["caption_0"], e["caption_1"]], [0, 1],
              key=str(e.get("id", "")))
    return b.build(spec, {"format": "winoground", "file": str(path), "images_root": str(root)})


MATCHING_SCHEMES = {
    "emoji-attributes": "emoji-attributes[:LANG] (offline: emoji differing in one attribute)",
    "sugarcrepe": "sugarcrepe:FOLDER (SugarCrepe's <kind>.json files; images: --images-root, COCO val2017)",
    "winoground": "winoground:FOLDER (examples.jsonl and images/)",
}


def is_matching_spec(spec: str) -> bool:
    return spec.partition(":")[0] in MATCHING_SCHEMES


def load_matching_set(spec: str, *, images_root: str | None = None, skip_missing: bool = False,
                      progress: ProgressFn | None = None) -> MatchingSet:
    scheme, _, arg = spec.partition(":")
    if scheme == "emoji-attributes":
        return load_emoji_attributes(spec, arg, skip_missing, progress)
    if scheme not in MATCHING_SCHEMES:
        raise UnknownNameError(f"unknown matching set '{spec}'; valid forms: {'; '.join(MATCHING_SCHEMES.values())}")
    if not arg:
        raise InputError(f"'{spec}' needs a folder: {MATCHING_SCHEMES[scheme]}")
    loader = load_sugarcrepe if scheme == "sugarcrepe" else load_winoground
    return loader(spec, arg, images_root, skip_missing)
