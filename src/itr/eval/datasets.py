"""Evaluation datasets: images with their captions (per language), read from a spec string.

Specs (a registry of schemes, like models):

- ``jsonl:PATH`` — lines ``{"image": path, "captions": [...]}`` (or ``"caption": "..."``); optional
  ``id`` and ``split`` (or ``meta.split``). Lines naming the same image are merged (one-caption-per-
  line files work). Relative paths resolve against the file's folder (or ``images_root``).
- ``karpathy:PATH`` — Karpathy-split JSON (``dataset_flickr30k.json``, ``dataset_coco.json``):
  ``images[].split``, ``filepath``/``filename``, ``sentences[].raw``; images under ``images_root``.
  Default split ``test``; at most 5 captions per image by default (the standard 1K/5K protocols use
  exactly 5; a few COCO images have 6-7).
- ``emoji[:LANG[,LANG...]]`` — Noto emoji with CLDR names/keywords, built on first use into the
  cache; several languages make a multilingual set (same images, captions per language).
- ``openclipart`` — Open Clip Art titles/keywords, filtered (see ``itr.datasets.openclipart``).
- ``tuxpaint[:LANG[,LANG...]]`` — Tux Paint's stamps: cut-out photos and drawings with one-line
  descriptions in up to ~100 languages (``itr.datasets.tuxpaint``); train/val/test by hash.
- ``gcompris[:LANG[,LANG...]]`` — GCompris' real photos and drawings with their names (and, for the
  explore activities, descriptions) in up to 45 languages (``itr.datasets.gcompris``);
  ``gcompris-photos`` and ``gcompris-drawings`` keep one kind. An evaluation set: never trained on.

The built-in sets have fixed splits (stable hash, 80/10/10); their default split is ``test``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, cache_dir, display_path
from ..errors import InputError, UnknownNameError

ANY_LANG = ""
"""Language key for captions of unspecified language (everything but multilingual sets)."""
BUILTIN_DATASET_VERSION = 1
"""Bump when the builders of the built-in sets change what they write: cached copies are rebuilt."""


class NoSplitsError(InputError):
    """A split was asked of a source whose items carry no split."""


class UnknownSplitError(InputError):
    """The split asked for is not among the source's splits (the message lists them)."""


@dataclass(frozen=True, slots=True)
class EvalItem:
    id: str
    image: str
    captions: dict[str, tuple[str, ...]]  # language -> captions


@dataclass(frozen=True, slots=True)
class CaptionTable:
    """Captions as parallel columns.

    Attributes:
        texts: the captions.
        image: index (into the dataset's items) of the image each caption describes.
        slot: position of the caption among its image's captions in its language, so that
            (image, slot) names the same caption across languages (used by MRV).
        lang: language of each caption (``ANY_LANG`` for ordinary sets).
    """

    texts: list[str]
    image: np.ndarray
    slot: np.ndarray
    lang: np.ndarray


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to read a dataset spec.

    Attributes:
        split: which split to evaluate (None: the dataset's default; all items for plain JSONL).
        images_root: folder the images live in (karpathy: required; jsonl: overrides the file's folder).
        skip_missing: evaluate on the images that exist when some are missing (else an error).
        max_captions: keep at most this many captions per image and language (0: all; None: the
            dataset's default, which is all except for karpathy, where it is 5).
    """

    split: str | None = None
    images_root: str | None = None
    skip_missing: bool = False
    max_captions: int | None = None


@dataclass(frozen=True)
class EvalDataset:
    """An evaluation set: the image gallery and the captions that describe each image.

    Attributes:
        name: the spec it was loaded from (e.g. ``emoji:fr``).
        split: the split evaluated (None when the source has none).
        items: images with captions, in a fixed order.
        languages: caption languages; ``(ANY_LANG,)`` for ordinary sets.
        source: what identifies the data (files and their sha256, builder versions).
        skipped: one line per image left out (missing or unreadable, with ``skip_missing``).
    """

    name: str
    split: str | None
    items: tuple[EvalItem, ...]
    languages: tuple[str, ...] = (ANY_LANG,)
    source: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def multilingual(self) -> bool:
        return len(self.languages) > 1

    @property
    def image_paths(self) -> list[str]:
        return [it.image for it in self.items]

    def texts(self, lang: str | None = None) -> CaptionTable:
        """Every caption of one language (None: all languages, language by language), in item order."""
        langs = self.languages if lang is None else (lang,)
        texts: list[str] = []
        image: list[int] = []
        slot: list[int] = []
        language: list[str] = []
        for lg in langs:
            for i, item in enumerate(self.items):
                for j, caption in enumerate(item.captions.get(lg, ())):
                    texts.append(caption)
                    image.append(i)
                    slot.append(j)
                    language.append(lg)
        return CaptionTable(texts, np.array(image, dtype=np.int64), np.array(slot, dtype=np.int64),
                            np.array(language, dtype=object))

    @property
    def query_images(self) -> np.ndarray:
        """Positions of the items with a caption: the i2t queries. The others are distractors, in
        the gallery only (``fg:`` sets' enlarged image pools)."""
        return np.array([i for i, it in enumerate(self.items) if any(it.captions.values())], dtype=np.int64)

    @property
    def has_distractors(self) -> bool:
        return any(not any(it.captions.values()) for it in self.items)

    def n_texts(self) -> int:
        return sum(len(c) for it in self.items for c in it.captions.values())

    def dropping(self, positions: list[int], reasons: list[str]) -> EvalDataset:
        """A copy without the items at ``positions`` (recorded in ``skipped`` with ``reasons``)."""
        gone = set(positions)
        return replace(self, items=tuple(it for i, it in enumerate(self.items) if i not in gone),
                       skipped=self.skipped + tuple(reasons))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _captions(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: 'captions' must be a non-empty list of strings")
    out: list[str] = []
    for c in value:
        if not isinstance(c, str):
            raise InputError(f"{where}: captions must be strings, got {type(c).__name__}")
        if not c.strip():
            raise InputError(f"{where}: empty caption; remove it or give the image a real caption")
        out.append(c.strip())
    return tuple(out)


def _pick_split(items: list[tuple[EvalItem, str | None]], split: str | None, where: str,
                default: str | None) -> tuple[list[EvalItem], str | None]:
    present = sorted({s for _, s in items if s is not None})
    wanted = split if split is not None else default
    if wanted is None:
        return [it for it, _ in items], None
    if not present:
        raise NoSplitsError(f"{where} has no 'split' field; drop --split to evaluate every item")
    if wanted not in present:
        raise UnknownSplitError(f"unknown split '{wanted}' in {where}; available: {', '.join(present)}")
    return [it for it, s in items if s == wanted], wanted


def _check_images(ds: EvalDataset, options: LoadOptions) -> EvalDataset:
    missing = [i for i, it in enumerate(ds.items) if not os.path.isfile(it.image)]
    if not missing:
        return ds
    if not options.skip_missing:
        first = display_path(ds.items[missing[0]].image)
        raise InputError(
            f"{len(missing)} of {len(ds.items)} images of {ds.name} are missing (first: {first}); fix the "
            f"paths or --images-root, or pass --skip-missing to evaluate on the {len(ds.items) - len(missing)} "
            "that exist")
    kept = ds.dropping(missing, [f"{display_path(ds.items[i].image)}: missing" for i in missing])
    if not kept.items:
        raise InputError(f"every image of {ds.name} is missing; check the paths or --images-root")
    return kept


def _limit(captions: tuple[str, ...], options: LoadOptions) -> tuple[str, ...]:
    return captions[: options.max_captions] if options.max_captions else captions


def load_jsonl(spec: str, arg: str, options: LoadOptions) -> EvalDataset:
    path = Path(arg).expanduser()
    if not path.is_file():
        raise InputError(f"dataset file not found: {display_path(path)}")
    base = Path(options.images_root) if options.images_root else path.parent
    merged: dict[str, tuple[EvalItem, str | None]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{display_path(path)}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"]:
                raise InputError(f"{where}: each line needs an 'image' path")
            captions = _captions(row.get("captions", row.get("caption")), where)
            image = str(base / row["image"])
            meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
            split = row.get("split", meta.get("split"))
            if image in merged:
                prev, prev_split = merged[image]
                merged[image] = (replace(prev, captions={ANY_LANG: prev.captions[ANY_LANG] + captions}),
                                 prev_split)
            else:
                item_id = str(row.get("id") or row["image"])
                merged[image] = (EvalItem(item_id, image, {ANY_LANG: captions}), split)
    if not merged:
        raise InputError(f"{display_path(path)} has no items")
    items, split = _pick_split(list(merged.values()), options.split, display_path(path), None)
    items = [replace(it, captions={ANY_LANG: _limit(it.captions[ANY_LANG], options)}) for it in items]
    ds = EvalDataset(spec, split, tuple(items), source={"file": str(path.resolve()), "sha256": _sha256(path)})
    return _check_images(ds, options)


def load_karpathy(spec: str, arg: str, options: LoadOptions) -> EvalDataset:
    path = Path(arg).expanduser()
    if not path.is_file():
        raise InputError(f"dataset file not found: {display_path(path)}")
    if not options.images_root:
        raise InputError(f"{spec} needs --images-root DIR: the folder that holds the dataset's images")
    root = Path(options.images_root).expanduser()
    if not root.is_dir():
        raise InputError(f"--images-root {display_path(root)} is not a folder")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{display_path(path)}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{display_path(path)}: not a Karpathy split file (expected an 'images' list)")
    max_captions = 5 if options.max_captions is None else options.max_captions
    entries: list[tuple[int, dict[str, Any]]] = []
    for n, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise InputError(f"{display_path(path)}: images[{n}]: needs a 'filename'")
        entries.append((n, entry))
    present = sorted({e["split"] for _, e in entries if isinstance(e.get("split"), str)})
    # The split is chosen first: a flaw in an entry of another split (an empty caption in train)
    # must not stop the evaluation of this one. A file without splits is evaluated whole unless
    # --split asks for one.
    wanted = options.split if options.split is not None else ("test" if present else None)
    if wanted is not None and not present:
        raise NoSplitsError(f"{display_path(path)} has no 'split' field; drop --split {wanted} to evaluate every image")
    if wanted is not None and wanted not in present:
        raise UnknownSplitError(f"unknown split '{wanted}' in {display_path(path)}; available: {', '.join(present)}")
    rows: list[tuple[EvalItem, str | None]] = []
    for n, entry in entries:
        if wanted is not None and entry.get("split") != wanted:
            continue
        where = f"{display_path(path)}: images[{n}] ({entry['filename']})"
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not all(isinstance(s, dict) for s in sentences):
            raise InputError(f"{where}: 'sentences' must be a list of {{'raw': ...}}")
        # Only the captions evaluated are checked: an empty 6th sentence is dropped by the cap anyway.
        kept = sentences[: max_captions or None]
        captions = _captions([s.get("raw") for s in kept], where)
        declared = root / entry.get("filepath", "") / entry["filename"]
        file = declared
        if not file.exists() and entry.get("filepath") and (root / entry["filename"]).exists():
            file = root / entry["filename"]  # images root pointing at the filepath folder itself
        item_id = str(entry.get("cocoid", entry.get("imgid", entry["filename"])))
        rows.append((EvalItem(item_id, str(file), {ANY_LANG: captions}), entry.get("split")))
    items, split = [it for it, _ in rows], wanted
    if not items:
        raise InputError(f"{display_path(path)} has no images" + (f" in split '{split}'" if split else ""))
    ds = EvalDataset(spec, split, tuple(items),
                     source={"file": str(path.resolve()), "sha256": _sha256(path),
                             "dataset": data.get("dataset"), "max_captions": max_captions})
    return _check_images(ds, options)


def _builtin_dir(name: str) -> Path:
    return cache_dir() / "datasets" / f"{name}-v{BUILTIN_DATASET_VERSION}"


def _read_built(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _languages(spec: str, arg: str) -> list[str]:
    langs = [lg.strip() for lg in (arg or "en").split(",") if lg.strip()]
    if len(set(langs)) != len(langs):
        raise InputError(f"{spec}: a language is listed twice")
    return langs


def _load_multilingual(spec: str, name: str, langs: list[str], options: LoadOptions,
                       build: Callable[[Path, str], Path], *, kind: str | None = None) -> EvalDataset:
    """A built-in set stored as one ``NAME-<lang>.jsonl`` per language (built on first use by
    ``build(folder, lang)``); several languages rank the same gallery: only the items captioned in
    every one of them. ``kind`` keeps the items whose ``meta.kind`` it is."""
    folder = _builtin_dir(name)
    by_lang: dict[str, dict[str, dict[str, Any]]] = {}
    source: dict[str, Any] = {"builder": f"itr.datasets.{name} v{BUILTIN_DATASET_VERSION}", "files": {}}
    for lang in langs:
        jsonl = build(folder, lang)
        rows = _read_built(jsonl)
        by_lang[lang] = {r["id"]: r for r in rows if kind is None or r["meta"].get("kind") == kind}
        source["files"][lang] = {"file": str(jsonl), "sha256": _sha256(jsonl)}
    first = by_lang[langs[0]]
    common = [i for i in first if all(i in by_lang[lg] for lg in langs[1:])]
    rows = [(EvalItem(i, str(folder / first[i]["image"]),
                      {(lg if len(langs) > 1 else ANY_LANG): _limit(tuple(by_lang[lg][i]["captions"]), options)
                       for lg in langs}), first[i]["meta"]["split"]) for i in common]
    if not rows:
        raise InputError(f"{spec}: no item has captions in every one of {', '.join(langs)}")
    items, split = _pick_split(rows, options.split, spec, "test")
    languages = tuple(langs) if len(langs) > 1 else (ANY_LANG,)
    ds = EvalDataset(spec, split, tuple(items), languages=languages, source=source)
    return _check_images(ds, options)


def _all_languages_builder(spec: str, name: str, missing: str,
                           build_all: Callable[[Path], Path]) -> Callable[[Path, str], Path]:
    """``build(folder, lang)`` for a set whose builder writes every language at once
    (``NAME-<lang>.jsonl``): builds on first use, then names the file or the languages it has."""
    def build(folder: Path, lang: str) -> Path:
        if not (folder / f"{name}-en.jsonl").is_file():
            build_all(folder)
        jsonl = folder / f"{name}-{lang}.jsonl"
        if not jsonl.is_file():
            have = sorted(p.stem.removeprefix(f"{name}-") for p in folder.glob(f"{name}-*.jsonl"))
            raise InputError(f"{spec}: {missing} in '{lang}'; languages: {', '.join(have)}")
        return jsonl

    return build


def load_emoji(spec: str, arg: str, options: LoadOptions, progress: ProgressFn | None = None) -> EvalDataset:
    from ..datasets.emoji import build_emoji_dataset

    def build(folder: Path, lang: str) -> Path:
        jsonl = folder / f"emoji-{lang}.jsonl"
        if not jsonl.is_file():
            build_emoji_dataset(folder, lang=lang, progress=progress)
        return jsonl

    return _load_multilingual(spec, "emoji", _languages(spec, arg), options, build)


def load_gcompris(spec: str, arg: str, options: LoadOptions, progress: ProgressFn | None = None) -> EvalDataset:
    """GCompris photos and drawings (``gcompris``), or one kind (``gcompris-photos``,
    ``gcompris-drawings``), in one or more languages."""
    from ..datasets.gcompris import build_gcompris_dataset

    scheme = spec.partition(":")[0]
    kind = {"gcompris": None, "gcompris-photos": "photo", "gcompris-drawings": "drawing"}[scheme]

    build = _all_languages_builder(spec, "gcompris", "GCompris has no captions",
                                   lambda folder: build_gcompris_dataset(folder, progress=progress))
    return _load_multilingual(spec, "gcompris", _languages(spec, arg), options, build, kind=kind)


def load_tuxpaint(spec: str, arg: str, options: LoadOptions, progress: ProgressFn | None = None) -> EvalDataset:
    """Tux Paint's stamps (photos and drawings) with their descriptions, in one or more languages."""
    from ..datasets.tuxpaint import build_tuxpaint_dataset

    build = _all_languages_builder(spec, "tuxpaint", "Tux Paint has no descriptions",
                                   lambda folder: build_tuxpaint_dataset(folder, progress=progress))
    return _load_multilingual(spec, "tuxpaint", _languages(spec, arg), options, build)


def load_openclipart(spec: str, arg: str, options: LoadOptions,
                     progress: ProgressFn | None = None) -> EvalDataset:
    from ..datasets.openclipart import build_openclipart_dataset

    if arg:
        raise InputError(f"{spec}: openclipart takes no argument (use 'openclipart')")
    folder = _builtin_dir("openclipart")
    jsonl = folder / "openclipart.jsonl"
    if not jsonl.is_file():
        build_openclipart_dataset(folder, progress=progress)
    rows = [(EvalItem(r["id"], r["image"], {ANY_LANG: _limit(tuple(r["captions"]), options)}), r["meta"]["split"])
            for r in _read_built(jsonl)]
    items, split = _pick_split(rows, options.split, spec, "test")
    ds = EvalDataset(spec, split, tuple(items),
                     source={"builder": f"itr.datasets.openclipart v{BUILTIN_DATASET_VERSION}", "file": str(jsonl),
                             "sha256": _sha256(jsonl)})
    return _check_images(ds, options)


def _image_name(name: str) -> str:
    return name if Path(name).suffix else f"{name}.jpg"


def _pool_names(path: Path) -> list[str]:
    """File names of an enlarged image pool: a ``.npy`` array of strings (read without pickle) or a
    text file with one name per line."""
    if path.suffix == ".npy":
        try:
            names = np.load(path, allow_pickle=False)
        except ValueError:
            raise InputError(f"{display_path(path)}: holds Python objects, and ITR reads .npy files without "
                             "pickle; convert it: python -c \"import numpy as np; np.savetxt('pool.txt', "
                             f"np.load('{path.name}', allow_pickle=True), fmt='%s')\" and pass pool.txt") from None
        except OSError as exc:
            raise InputError(f"{display_path(path)}: cannot read ({exc})") from None
        if names.dtype.kind not in "US":
            raise InputError(f"{display_path(path)}: expected an array of file names, got dtype {names.dtype}")
        return [str(n.decode() if isinstance(n, bytes) else n) for n in names.ravel()]
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{display_path(path)}: cannot read ({exc})") from None


def load_fg(spec: str, arg: str, options: LoadOptions) -> EvalDataset:
    """MSCOCO-FG / Flickr30K-FG style sets (Chen et al., SIGIR 2023): ``ANN.json`` maps an image name
    to its (refined) captions, ``{"COCO_val2014_000000452113": ["...", ...]}``; an optional pool
    (``fg:ANN.json,POOL``, a ``.npy`` of file names or a text file) enlarges the gallery with similar
    images that no caption describes (t2i must find the target among them; they are no i2t query).
    Images from ``--images-root`` (default: the annotation file's folder); a name without an
    extension is read as ``.jpg``."""
    ann_arg, _, pool_arg = arg.partition(",")
    path = Path(ann_arg).expanduser()
    if not path.is_file():
        raise InputError(f"dataset file not found: {display_path(path)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{display_path(path)}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{display_path(path)}: expected an object mapping image names to caption lists")
    root = Path(options.images_root) if options.images_root else path.parent
    items: list[EvalItem] = []
    seen: set[str] = set()
    for name, caps in data.items():
        captions = _limit(_captions(caps, f"{display_path(path)}: '{name}'"), options)
        file = _image_name(name)
        seen.add(Path(file).name)
        items.append(EvalItem(Path(file).stem, str(root / file), {ANY_LANG: captions}))
    pool: list[str] = []
    if pool_arg:
        pool_path = Path(pool_arg).expanduser()
        if not pool_path.is_file():
            raise InputError(f"image pool file not found: {display_path(pool_path)}")
        pool = [n for n in _pool_names(pool_path) if Path(_image_name(n)).name not in seen]
        for name in dict.fromkeys(pool):
            file = _image_name(name)
            items.append(EvalItem(Path(file).stem, str(root / file), {ANY_LANG: ()}))
    source = {"format": "fg", "file": str(path), "sha256": _sha256(path), "distractors": len(items) - len(data)}
    if pool_arg:
        source |= {"pool": pool_arg, "pool_sha256": _sha256(Path(pool_arg).expanduser())}
    return _check_images(EvalDataset(spec, None, tuple(items), source=source), options)


Loader = Callable[..., EvalDataset]
DATASET_SCHEMES: dict[str, tuple[Loader, bool, str]] = {
    # scheme: (loader, takes a progress callback, usage)
    "jsonl": (load_jsonl, False, "jsonl:PATH"),
    "karpathy": (load_karpathy, False, "karpathy:PATH/dataset_flickr30k.json (with --images-root)"),
    "emoji": (load_emoji, True, "emoji[:LANG[,LANG...]]"),
    "openclipart": (load_openclipart, True, "openclipart"),
    "tuxpaint": (load_tuxpaint, True, "tuxpaint[:LANG[,LANG...]] (photos and drawings of Tux Paint's stamps)"),
    "gcompris": (load_gcompris, True, "gcompris[:LANG[,LANG...]] (photos and drawings; evaluation only)"),
    "gcompris-photos": (load_gcompris, True, "gcompris-photos[:LANG,...]"),
    "gcompris-drawings": (load_gcompris, True, "gcompris-drawings[:LANG,...]"),
    "fg": (load_fg, False, "fg:ANN.json[,POOL.npy|POOL.txt] (MSCOCO-FG / Flickr30K-FG style, with --images-root)"),
}


def dataset_usage() -> list[str]:
    return [usage for _, _, usage in DATASET_SCHEMES.values()]


def load_eval_dataset(spec: str, options: LoadOptions | None = None, *,
                      progress: ProgressFn | None = None) -> EvalDataset:
    """Read the dataset a spec names (see the module docstring for the schemes)."""
    options = options or LoadOptions()
    scheme, _, arg = spec.partition(":")
    if scheme not in DATASET_SCHEMES:
        raise UnknownNameError(f"unknown dataset '{spec}'; valid forms: {'; '.join(dataset_usage())}")
    loader, takes_progress, usage = DATASET_SCHEMES[scheme]
    if scheme in ("jsonl", "karpathy", "fg") and not arg:
        raise InputError(f"'{spec}' needs a path: {usage}")
    if options.max_captions is not None and options.max_captions < 0:
        raise InputError("--max-captions must be 0 (all) or more")
    return loader(spec, arg, options, progress) if takes_progress else loader(spec, arg, options)
