"""Open Clip Art Library 0.18 (Debian ``openclipart-svg`` + ``openclipart-png``) as an image-text set.

Each SVG carries RDF metadata: a title and a bag of keywords. The PNG twin (same path under
``png/``) is the image. The metadata is noisy in known ways, so items are filtered:

- collection boilerplate titles ("Part of the Flat Icon Collection ...", "Lemon SVG theme",
  "gramastar", "card") are recognised by being shared by more than ``MAX_TITLE_SHARE`` items, or by
  naming a collection/theme; such items are dropped: their caption cannot identify them;
- "Clipart by AUTHOR - name" titles keep only the name; underscores become spaces; trailing
  numbering ("_01") goes;
- PNGs above Pillow's decompression-bomb limit (a few posters of up to 169 MP) are dropped;
- keywords that are packaging jargon (hash, icons, theme, magick, ...), numbers or hex, or the
  title itself are dropped.

Captions are ``[title, "kw1, kw2, ..."]`` (the second only when keywords remain). The split is a
stable hash of the file's path in the collection (80/10/10), so it never changes between builds.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from PIL import Image

from .._utils import ProgressFn, atomic_write_bytes
from ..errors import InputError
from ..images import DEFAULT_MAX_PIXELS
from .emoji import split_of

ROOTS = ("/usr/share/openclipart",)
INSTALL_HINT = "install them with: sudo apt-get install openclipart-svg openclipart-png"
MAX_TITLE_SHARE = 3
_JARGON_KEYWORDS = frozenset({
    "hash", "icons", "icon", "theme", "magick", "geometry", "computer", "unsorted", "special", "clipart",
    "clip art", "svg", "png", "lemon theme icon", "signs and symbols", "united nations member", "mimeicon",
    "appicon", "mapsym", "map symbol", "mime-types", "mimetypes", "action", "application", "filesystem",
    "menu", "webpage", "gradients", "shapes", "shape", "white", "black", "bordered", "simple", "work",
    "office", "media", "misc", "other", "stuff", "image", "picture", "drawing", "clip-art",
})
_BOILERPLATE_TITLE = re.compile(r"collection|theme|icons?\b|clip\s*art|open clip|untitled|^map symbols?$",
                                re.IGNORECASE)
_CLIPART_BY = re.compile(r"^clipart by [^-]+ - ", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"(?:[\s_-]+\d+)+$")


def find_root() -> Path:
    for root in ROOTS:
        if os.path.isdir(os.path.join(root, "svg")) and os.path.isdir(os.path.join(root, "png")):
            return Path(root)
    raise InputError(f"Open Clip Art not found (looked in {', '.join(ROOTS)}); {INSTALL_HINT}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_svg_metadata(path: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """``(title, keywords)`` of the SVG's ``cc:Work`` (namespace-agnostic: files use two cc URIs).

    Parsing stops at the end of ``<metadata>``, so the drawing itself is never read.
    """
    title, keywords = "", []
    for _, el in ET.iterparse(path, events=("end",)):
        name = _local(el.tag)
        if name == "Work":
            for child in el:
                cname = _local(child.tag)
                if cname == "title":
                    title = (child.text or "").strip()
                elif cname == "subject":
                    keywords = [(li.text or "").strip() for li in child.iter() if _local(li.tag) == "li"]
            break
        if name == "metadata":
            break
    return title, keywords


def clean_title(title: str) -> str:
    title = _CLIPART_BY.sub("", title.strip())
    title = title.replace("_", " ")
    title = _TRAILING_NUMBER.sub("", title)
    return " ".join(title.split())


def clean_keywords(keywords: list[str], title: str) -> list[str]:
    out: list[str] = []
    for kw in keywords:
        kw = " ".join(kw.replace("_", " ").lower().split())
        if (len(kw) < 2 or kw in _JARGON_KEYWORDS or kw == title.lower() or any(c.isdigit() for c in kw)
                or kw.startswith("0x") or kw in out):
            continue
        out.append(kw)
    return out


def _usable_title(title: str, shares: Counter[str]) -> bool:
    letters = sum(c.isalpha() for c in title)
    return (letters >= 3 and shares[title.lower()] <= MAX_TITLE_SHARE
            and not _BOILERPLATE_TITLE.search(title))


def _too_large(png: Path) -> bool:
    """A few PNGs are rendered at poster size (up to 169 MP): not worth decoding for retrieval."""
    try:
        with Image.open(png) as im:  # reads the header only
            w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError):
        return True  # far too large, or unreadable: either way not an item
    return w * h > DEFAULT_MAX_PIXELS


def build_openclipart_dataset(out: str | os.PathLike[str], *, progress: ProgressFn | None = None) -> Path:
    """Write ``out/openclipart.jsonl`` (absolute PNG paths; nothing is copied). Returns its path.

    Lines are ``{"id", "image", "captions", "meta": {"title", "keywords", "category", "split"}}``
    where ``id`` is the path in the collection without extension (``animals/birds/cigno_01``).
    """
    root = find_root()
    svg_root = root / "svg"
    svgs = sorted(
        os.path.join(d, f) for d, _, files in os.walk(svg_root) for f in files if f.endswith(".svg")
    )
    if not svgs:
        raise InputError(f"no SVG files under {svg_root}; {INSTALL_HINT}")
    parsed: list[tuple[str, str, list[str]]] = []
    for n, svg in enumerate(svgs, start=1):
        try:
            raw_title, raw_keywords = read_svg_metadata(svg)
        except ET.ParseError:
            raw_title, raw_keywords = "", []  # a few files have broken XML: no caption, dropped below
        rel = os.path.relpath(svg, svg_root)[: -len(".svg")]
        parsed.append((rel, clean_title(raw_title), raw_keywords))
        if progress and (n % 200 == 0 or n == len(svgs)):
            progress(n, len(svgs))
    shares = Counter(title.lower() for _, title, _ in parsed)
    lines: list[str] = []
    for rel, title, raw_keywords in parsed:
        png = root / "png" / (rel + ".png")
        if not title or not _usable_title(title, shares) or not png.is_file() or _too_large(png):
            continue
        keywords = clean_keywords(raw_keywords, title)
        captions = [title] + ([", ".join(keywords)] if keywords else [])
        lines.append(json.dumps({
            "id": rel, "image": str(png), "captions": captions,
            "meta": {"title": title, "keywords": keywords, "category": rel.split("/", 1)[0],
                     "split": split_of(rel)},
        }, ensure_ascii=False))
    if not lines:
        raise InputError(f"no usable Open Clip Art items under {root}; {INSTALL_HINT}")
    path = Path(out) / "openclipart.jsonl"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
