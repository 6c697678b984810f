"""GCompris (Debian ``gcompris-qt-data``) as a multilingual image-text set: real photos and drawings
with their names, in the languages GCompris is translated into. **An evaluation set**: never train
on it; it is how ITR judges a model on kinds of data the model never saw.

What is taken (images are read from the Qt resource bundles, texts from the activities' data and
the compiled translations; see ``itr.datasets.qt_files``):

- ``explore_world_animals``, ``explore_farm_animals``, ``explore_monuments``: a photo per entry with
  its name (``title``) and a description of one to four sentences (``text``), both translated in
  ``gcompris_<lang>.qm`` (context: the board file's name). ``explore_world_music`` is left out:
  its titles name countries, not what its pictures show.
- ``lang`` (``words_sample``): drawings of words, named in ``content-<lang>.json`` (45 languages).
- ``erase`` and ``categorization``: photos of animals and objects named by their file names
  (``red_panda.webp``, ``measuringTape6.webp``), English only.

Every item records ``kind`` (``photo`` or ``drawing``), the activity, the file's path in GCompris'
sources and its licence from the package's machine-readable copyright file (DEP-5, read with
``python-debian``; the copyright file names some images by their original ``.jpg``/``.png``
extension, which is tried when the ``.webp`` name matches only the catch-all paragraph). Images
with the same bytes are kept once. Every item is in the ``test`` split.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._utils import ProgressFn, atomic_write_bytes
from ..errors import InputError
from .qt_files import RccArchive, read_qm

ROOT = Path("/usr/share/gcompris-qt")
COPYRIGHT = Path("/usr/share/doc/gcompris-qt-data/copyright")
INSTALL_HINT = "install it with: sudo apt-get install gcompris-qt-data"
EXPLORE = ("explore_world_animals", "explore_farm_animals", "explore_monuments")
ACTIVITIES = "gcompris/src/activities"
_RASTER = (".webp", ".jpg", ".jpeg", ".png")

_QSTR = r'qsTr\("((?:[^"\\]|\\.)*)"\)'
_FIELD = re.compile(r'"(\w+)"\s*:\s*(?:' + _QSTR + r'|"((?:[^"\\]|\\.)*)")')
_OBJECT = re.compile(r"\{([^{}]*)\}")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass
class GComprisItem:
    id: str
    source_path: str  # the file's path in GCompris' sources: src/activities/...
    kind: str  # "photo" or "drawing"
    activity: str
    captions: dict[str, list[str]] = field(default_factory=dict)  # language -> captions


def _unescape(text: str) -> str:
    return json.loads(f'"{text}"') if "\\" in text else text


def _explore_items(files: dict[str, bytes], qm: dict[str, dict[tuple[str, str], str]]) -> Iterator[GComprisItem]:
    for activity in EXPLORE:
        prefix = f"{ACTIVITIES}/{activity}/resource/board/"
        for path in sorted(p for p in files if p.startswith(prefix) and p.endswith(".qml")):
            context = Path(path).stem
            for obj in _OBJECT.finditer(files[path].decode("utf-8")):
                fields = {m.group(1): (_unescape(m.group(2)) if m.group(2) is not None else m.group(3))
                          for m in _FIELD.finditer(obj.group(1))}
                image = next((fields[k] for k in ("image2", "image") if k in fields
                              and fields[k].lower().endswith(_RASTER)), None)
                if image is None or not fields.get("title"):
                    continue
                texts = [t for t in (fields.get("title"), fields.get("text")) if t]
                item = GComprisItem(id=f"{activity}/{Path(image).stem}", source_path=image.removeprefix("qrc:/gcompris/"),
                                    kind="photo", activity=activity, captions={"en": [t.strip() for t in texts]})
                for lang, table in qm.items():
                    translated = [table.get((context, t)) for t in texts]
                    if translated[0]:  # the name at least; the description where it is translated
                        item.captions[lang] = [t.strip() for t in translated if t]
                yield item


def _word_items(files: dict[str, bytes]) -> Iterator[GComprisItem]:
    base = f"{ACTIVITIES}/lang/resource/"
    contents = {Path(p).stem.removeprefix("content-"): json.loads(files[p]) for p in files
                if p.startswith(base + "content-") and p.endswith(".json")}
    chapters = json.loads(files[base + "words_sample.json"])
    seen: set[str] = set()
    for chapter in chapters:
        for lesson in chapter.get("content", []):
            for word in lesson.get("content", []):
                image, english = word.get("image"), word.get("description")
                if not image or not english or image in seen:
                    continue
                seen.add(image)
                voice = Path(word.get("voice", "")).name.replace(".$CA", ".ogg")
                item = GComprisItem(id=f"lang/{Path(image).stem}", source_path=f"src/activities/lang/resource/"
                                    f"words_sample/{image}", kind="drawing", activity="lang",
                                    captions={"en": [english]})
                for lang, table in sorted(contents.items()):
                    if lang != "en" and table.get(voice):
                        item.captions[lang] = [table[voice]]
                yield item


def _named_by_file(files: dict[str, bytes], activity: str) -> Iterator[GComprisItem]:
    prefix = f"{ACTIVITIES}/{activity}/resource/"
    for path in sorted(p for p in files if p.startswith(prefix) and p.lower().endswith(_RASTER)):
        stem = Path(path).stem
        name = _CAMEL.sub(" ", re.sub(r"\d+$", "", stem)).replace("_", " ").strip().lower()
        if len(name) < 3 or stem in ("background", "question"):
            continue
        yield GComprisItem(id=f"{activity}/{path.removeprefix(prefix).rsplit('.', 1)[0]}",
                           source_path=path.removeprefix("gcompris/"), kind="photo", activity=activity,
                           captions={"en": [name]})


class _Licences:
    """The licence of a GCompris source file, from the package's DEP-5 copyright file."""

    def __init__(self, path: Path) -> None:
        from .._utils import require

        copyright_ = require("debian.copyright", "gcompris", "the gcompris dataset")
        with open(path, encoding="utf-8") as fh:
            self._doc = copyright_.Copyright(fh, strict=False)

    def __call__(self, source_path: str) -> tuple[str, str]:
        """(licence, the ``Files:`` pattern that gave it). Only the catch-all ``*`` matching means
        the copyright file names the file nowhere (it lists some images under older names)."""
        stem = source_path.rsplit(".", 1)[0]
        fallback: tuple[str, str] | None = None
        for candidate in (source_path, *(stem + ext for ext in (".jpg", ".png", ".jpeg", ".svg"))):
            para = self._doc.find_files_paragraph(candidate)
            if para is None:
                continue
            pattern = next((f for f in para.files if f != "*"), "*")
            if tuple(para.files) != ("*",):
                return str(para.license.synopsis), pattern
            fallback = fallback or (str(para.license.synopsis), "*")
        return fallback or ("unknown", "")


def find_root() -> Path:
    if (ROOT / "rcc").is_dir() and (ROOT / "translations").is_dir():
        return ROOT
    raise InputError(f"GCompris data not found in {ROOT}; {INSTALL_HINT}")


def read_gcompris(root: Path | None = None) -> tuple[list[GComprisItem], dict[str, bytes]]:
    """The items (deduplicated by image bytes) and the image bytes by ``source_path``."""
    root = root or find_root()
    files: dict[str, bytes] = {}
    for rcc in sorted((root / "rcc").glob("*.rcc")):
        files.update(RccArchive(rcc).read_all())
    qm = {p.stem.removeprefix("gcompris_"): read_qm(p) for p in sorted((root / "translations").glob("gcompris_*.qm"))}
    items: list[GComprisItem] = []
    images: dict[str, bytes] = {}
    seen: set[str] = set()
    for item in [*_explore_items(files, qm), *_word_items(files), *_named_by_file(files, "erase"),
                 *_named_by_file(files, "categorization")]:
        data = files.get("gcompris/" + item.source_path)
        if data is None:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        items.append(item)
        images[item.source_path] = data
    return items, images


def build_gcompris_dataset(out: str | Path, *, progress: ProgressFn | None = None) -> Path:
    """Write ``images/`` and one ``gcompris-<lang>.jsonl`` per language into ``out``; returns the
    English file. Each line: ``{"id", "image", "captions", "meta": {"kind", "activity", "lang",
    "licence", "licence_files" (the copyright paragraph's pattern), "source", "split": "test"}}``."""
    root = find_root()
    items, images = read_gcompris(root)
    licence = _Licences(COPYRIGHT) if COPYRIGHT.is_file() else (lambda path: ("see the package's copyright file", ""))
    out = Path(out)
    rows: dict[str, list[dict[str, Any]]] = {}
    for n, item in enumerate(items):
        if progress:
            progress(n, len(items))
        suffix = Path(item.source_path).suffix.lower()
        rel = f"images/{item.id.replace('/', '__')}{suffix}"
        if not (out / rel).is_file():
            atomic_write_bytes(out / rel, images[item.source_path])
        licence_name, pattern = licence(item.source_path)
        meta = {"kind": item.kind, "activity": item.activity, "licence": licence_name, "licence_files": pattern,
                "source": item.source_path, "split": "test"}
        for lang, captions in item.captions.items():
            rows.setdefault(lang, []).append({"id": item.id, "image": rel, "captions": captions,
                                              "meta": {**meta, "lang": lang}})
    for lang, lines in rows.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines)
        atomic_write_bytes(out / f"gcompris-{lang}.jsonl", text.encode("utf-8"))
    if progress:
        progress(len(items), len(items))
    return out / "gcompris-en.jsonl"
