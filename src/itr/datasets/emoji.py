"""Emoji as an image-text collection: Noto Color Emoji glyphs with Unicode CLDR names and keywords.

Both are real data shipped by Debian (``fonts-noto-color-emoji``, ``unicode-cldr-core``); CLDR
annotates each emoji in 100+ languages, so the same images serve every language.

Each item gets a fixed split by a stable hash of the emoji itself (80% train, 10% val, 10% test), so
training never sees evaluation items whatever the language or the order of the files.
"""

from __future__ import annotations

import hashlib
import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

from .._utils import ProgressFn, atomic_write_bytes
from ..errors import InputError, UnknownNameError

FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",)
CLDR_DIRS = ("/usr/share/unicode/cldr/common/annotations",)
INSTALL_HINT = "install them with: sudo apt-get install fonts-noto-color-emoji unicode-cldr-core"
_FONT_SIZE = 109  # the only size of the font's colour bitmaps (CBDT strike)
_CANVAS = 160
_MARGIN = 4


@dataclass(frozen=True, slots=True)
class EmojiAnnotation:
    char: str
    name: str
    keywords: tuple[str, ...]


def _find(paths: tuple[str, ...], what: str) -> Path:
    for p in paths:
        if os.path.exists(p):
            return Path(p)
    raise InputError(f"{what} not found (looked in {', '.join(paths)}); {INSTALL_HINT}")


def cldr_languages() -> list[str]:
    folder = _find(CLDR_DIRS, "Unicode CLDR annotations")
    return sorted(p.stem for p in folder.glob("*.xml"))


def read_annotations(lang: str) -> list[EmojiAnnotation]:
    """CLDR names (``type="tts"``) and keywords for every annotated character in ``lang``."""
    folder = _find(CLDR_DIRS, "Unicode CLDR annotations")
    path = folder / f"{lang}.xml"
    if not path.is_file():
        raise UnknownNameError(f"no CLDR annotations for language '{lang}'; available: {', '.join(cldr_languages())}")
    names: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    for el in ET.parse(path).getroot().iter("annotation"):
        cp, text = el.get("cp"), (el.text or "").strip()
        if not cp or not text or text == "↑↑↑":  # ↑↑↑ marks "inherit from parent locale"
            continue
        if el.get("type") == "tts":
            names[cp] = text
        else:
            keywords[cp] = tuple(k.strip() for k in text.split("|") if k.strip())
    return [EmojiAnnotation(cp, names[cp], keywords.get(cp, ())) for cp in names]


def split_of(key: str) -> str:
    """Stable train/val/test assignment (80/10/10) from a hash of the item key."""
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


class EmojiRenderer:
    """Renders emoji with the colour font, refusing characters the font does not really have."""

    def __init__(self) -> None:
        self.font = ImageFont.truetype(str(_find(FONT_PATHS, "Noto Color Emoji font")), _FONT_SIZE)
        # What the font draws for a character it lacks (its .notdef box): renders equal to it are dropped.
        self._tofu = self._draw("\U0010fffd")

    def _draw(self, text: str) -> Image.Image:
        canvas = Image.new("RGBA", (_CANVAS * 2, _CANVAS), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((_CANVAS, _CANVAS // 2), text, font=self.font, embedded_color=True, anchor="mm")
        return canvas

    def render(self, char: str) -> Image.Image | None:
        """RGBA image of one emoji, cropped square, or None if the font has no single glyph for it."""
        img = self._draw(char)
        box = img.getchannel("A").getbbox()
        if box is None:
            return None  # blank render
        if ImageChops.difference(img, self._tofu).getbbox() is None:
            return None  # the font's missing-glyph box
        w, h = box[2] - box[0], box[3] - box[1]
        if w > _CANVAS - 2 * _MARGIN:
            return None  # a sequence the font has no ligature for: drawn as several glyphs side by side
        side = max(w, h) + 2 * _MARGIN
        out = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        out.paste(img.crop(box), ((side - w) // 2, (side - h) // 2))
        return out


def _file_name(char: str) -> str:
    return "emoji_" + "-".join(f"{ord(c):04x}" for c in char) + ".png"


def build_emoji_dataset(out: str | os.PathLike[str], *, lang: str = "en", limit: int | None = None,
                        progress: ProgressFn | None = None) -> Path:
    """Render emoji into ``out/images`` and write ``out/emoji-<lang>.jsonl``.

    Lines are ``{"id", "image", "captions": [name, "kw1, kw2, ..."], "meta": {"char", "name",
    "keywords", "lang", "split"}}``. Images already rendered are reused. ``limit`` caps the number
    of emoji written. Returns the JSONL path.
    """
    root = Path(out)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    annotations = read_annotations(lang)
    renderer = EmojiRenderer()
    lines: list[str] = []
    import json

    todo = annotations
    for n, ann in enumerate(todo, start=1):
        if limit is not None and len(lines) >= limit:
            break
        fname = _file_name(ann.char)
        path = images / fname
        if not path.exists():
            img = renderer.render(ann.char)
            if img is None:
                if progress:
                    progress(n, len(todo))
                continue
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
            atomic_write_bytes(path, buf.getvalue())
        extra = ", ".join(k for k in ann.keywords if k != ann.name)
        captions = [ann.name] + ([extra] if extra else [])
        lines.append(json.dumps({
            "id": fname[: -len(".png")], "image": f"images/{fname}", "captions": captions,
            "meta": {"char": ann.char, "name": ann.name, "keywords": list(ann.keywords), "lang": lang,
                     "split": split_of(ann.char)},
        }, ensure_ascii=False))
        if progress:
            progress(n, len(todo))
    if not lines:
        raise InputError(f"no emoji could be rendered for '{lang}'; {INSTALL_HINT}")
    jsonl = root / f"emoji-{lang}.jsonl"
    atomic_write_bytes(jsonl, ("\n".join(lines) + "\n").encode("utf-8"))
    return jsonl
