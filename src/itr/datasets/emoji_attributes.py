"""``emoji-attributes``: groups of Noto emoji that differ in one attribute, for fine-grained matching.

Unicode encodes many emoji as a base plus one attribute: a skin tone modifier ("thumbs up: dark skin
tone" against "thumbs up: medium skin tone"), a gender ("woman biking" against "man biking"), a
hair style ("man: red hair" against "man: curly hair"), a direction ("backhand index pointing
left" against "... right"), or a ZWJ composition of people ("family: man, woman, boy" against
"family: man, woman, girl"). CLDR names every one of them (``annotations`` and
``annotationsDerived``), so each group is a small, exact test: the images differ in one attribute
and so do their names, and a model must tell them apart. No download: the same Debian packages as
the ``emoji`` set (Noto Color Emoji, OFL-1.1; Unicode CLDR, Unicode licence).

Groups are found from the English names; captions can be in any CLDR language. Each image records
its split in the ``emoji`` set (None when that set does not hold it: it reads the base annotations
only, so skin-tone variants are never in it), so a report can say how many groups hold images the
built-in heads were trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from .._utils import ProgressFn, atomic_write_bytes
from ..errors import InputError, UnknownNameError
from .emoji import CLDR_DIRS, INSTALL_HINT, EmojiRenderer, _file_name, _find, read_annotations, split_of

ATTRIBUTES_VERSION = 2
"""Bump when the groups written change (v2: variants drawn identically to another are dropped)."""
KINDS = ("skin_tone", "gender", "hair", "direction", "composition")
_TONES = ("light", "medium-light", "medium", "medium-dark", "dark")
_TONE = re.compile(r"^(?P<base>[^:]+): (?P<tone>" + "|".join(t.replace("-", r"\-") for t in _TONES) + r") skin tone$")
_GENDER = re.compile(r"\b(man|woman|men|women)\b")
_HAIR = re.compile(r"^(?P<who>man|woman|person): (?P<hair>red hair|curly hair|white hair|bald|blond hair)$")
_DIRECTION = re.compile(r"\b(left|right|up|down)\b")
_COMPOSED = re.compile(r"^(?P<what>[^:]+): (?P<parts>[^:]+, [^:]+)$")


def attributes_file(lang: str) -> str:
    return f"emoji-attributes-v{ATTRIBUTES_VERSION}-{lang}.json"


def _names(lang: str) -> dict[str, str]:
    """Character -> CLDR name (``tts``), from the base and derived annotations of ``lang``."""
    root = _find(CLDR_DIRS, "Unicode CLDR annotations")
    derived_root = root.parent / "annotationsDerived"
    names: dict[str, str] = {}
    found = False
    for folder in (root, derived_root):
        path = folder / f"{lang}.xml"
        if not path.is_file():
            continue
        found = True
        for el in ET.parse(path).getroot().iter("annotation"):
            text = (el.text or "").strip()
            if el.get("type") == "tts" and el.get("cp") and text and text != "↑↑↑":
                names.setdefault(el.get("cp", ""), text)
    if not found:
        have = sorted(p.stem for p in root.glob("*.xml"))
        raise UnknownNameError(f"no CLDR annotations for language '{lang}'; available: {', '.join(have)}")
    return names


def find_groups(names: dict[str, str]) -> dict[str, list[list[str]]]:
    """Kind -> groups of characters whose English names differ in that one attribute only."""
    keyed: dict[str, dict[str, list[str]]] = {kind: defaultdict(list) for kind in KINDS}
    for char, name in names.items():
        tone = _TONE.match(name)
        if tone:
            keyed["skin_tone"][tone["base"]].append(char)
            continue
        if "skin tone" in name:
            continue  # two attributes at once (a tone and something else): not a one-attribute pair
        hair = _HAIR.match(name)
        if hair:
            keyed["hair"][hair["who"]].append(char)
        genders = _GENDER.findall(name)
        if len(genders) == 1 and not name.startswith(("family", "kiss", "couple")):
            keyed["gender"][_GENDER.sub("<g>", name)].append(char)
        if len(_DIRECTION.findall(name)) == 1:
            keyed["direction"][_DIRECTION.sub("<d>", name)].append(char)
        composed = _COMPOSED.match(name)
        if composed and "\u200d" in char:
            keyed["composition"][f"{composed['what']}/{composed['parts'].count(',')}"].append(char)
    return {kind: [sorted(chars) for _, chars in sorted(groups.items()) if len(chars) >= 2]
            for kind, groups in keyed.items()}


def build_emoji_attributes(out: str | os.PathLike[str], *, lang: str = "en",
                           progress: ProgressFn | None = None) -> Path:
    """Render every grouped emoji into ``out/images`` and write ``out/emoji-attributes-v2-<lang>.json``:
    ``{"groups": [{"kind", "key", "items": [{"char", "image", "caption", "emoji_split"}]}], "source"}``.
    Characters the font cannot draw as one glyph are left out (a group needs two that it can)."""
    english = _names("en")
    captions = english if lang == "en" else _names(lang)
    # The emoji set reads the base annotations only: those characters have a split there.
    in_emoji_set = {a.char for a in read_annotations("en")}
    root = Path(out)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    renderer = EmojiRenderer()
    groups = find_groups(english)
    todo = sorted({c for gs in groups.values() for g in gs for c in g})
    drawn: dict[str, str] = {}
    for n, char in enumerate(todo, start=1):
        fname = _file_name(char)
        path = images / fname
        if path.exists():
            drawn[char] = f"images/{fname}"
        else:
            img = renderer.render(char)
            if img is not None:
                buf = io.BytesIO()
                img.save(buf, format="PNG", optimize=True)
                atomic_write_bytes(path, buf.getvalue())
                drawn[char] = f"images/{fname}"
        if progress:
            progress(n, len(todo))
    written = []
    digests = {c: hashlib.sha256((root / path).read_bytes()).hexdigest() for c, path in drawn.items()}
    for kind in KINDS:
        for chars in groups[kind]:
            # A variant the font draws exactly like another of its group shows no attribute: drop both.
            counts = Counter(digests[c] for c in chars if c in drawn)
            items = [{"char": c, "image": drawn[c], "caption": captions[c],
                      "emoji_split": split_of(c) if c in in_emoji_set else None}
                     for c in chars if c in drawn and c in captions and counts[digests[c]] == 1]
            if len(items) >= 2 and len({it["caption"] for it in items}) == len(items):
                written.append({"kind": kind, "key": english[chars[0]], "items": items})
    if not written:
        raise InputError(f"no emoji attribute group could be rendered for '{lang}'; {INSTALL_HINT}")
    data = {"groups": written, "lang": lang,
            "source": {"font": "Noto Color Emoji (OFL-1.1)", "names": "Unicode CLDR annotations and "
                       "annotationsDerived (Unicode licence)"}}
    target = root / attributes_file(lang)
    atomic_write_bytes(target, (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    return target
