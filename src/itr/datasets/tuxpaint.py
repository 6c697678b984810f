"""Tux Paint's stamps (Debian ``tuxpaint-stamps-default``) as a multilingual image-text set.

About 800 PNG stamps: cut-out **photos** of animals, plants, food, vehicles and household objects on
transparent backgrounds, and drawings (letters, sign language, coins, seasonal clip art). Each stamp
``NAME.png`` has ``NAME.txt`` beside it: the English description on the first line ("A goat.",
"Holly leaves are shiny and have prickles!"), then one ``LANG.utf8=...`` line per translation (up to
about 100 locales). It is the only offline source of real photos with human-written captions that
ITR may **train** on (GCompris is evaluation only), so it carries the usual 80/10/10 split by a
stable hash of the stamp's path (``animals/mammals/bovines/goat``).

Stamps that exist only as SVG (about 165) are left out: rendering them would need an SVG library
the built-in model does not otherwise use. Regional English variants (``en_GB``, ``en_AU``, ...)
are folded away: they repeat the English line. Languages are written as in GCompris' files:
``pt_BR``, ``zh_TW``. Licence: GPL-2+ (the package's copyright file, one paragraph for all files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._utils import ProgressFn, atomic_write_bytes
from ..errors import InputError
from .emoji import split_of

ROOTS = ("/usr/share/tuxpaint/stamps",)
COPYRIGHT = Path("/usr/share/doc/tuxpaint-stamps-default/copyright")
INSTALL_HINT = "install it with: sudo apt-get install tuxpaint-stamps-default"
LICENCE = "GPL-2+"
MIN_ITEMS_PER_LANGUAGE = 50  # a locale with fewer translated stamps is not a useful set of its own


def find_root() -> Path:
    for root in ROOTS:
        if os.path.isdir(root):
            return Path(root)
    raise InputError(f"Tux Paint stamps not found (looked in {', '.join(ROOTS)}); {INSTALL_HINT}")


def read_description(path: Path) -> dict[str, str]:
    """``{lang: text}`` of a stamp's ``.txt``: the first line without ``=`` is English."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = " ".join(raw.split())
        if not line:
            continue
        key, sep, text = line.partition("=")
        if not sep or not key.endswith(".utf8") or " " in key:
            out.setdefault("en", line)
            continue
        lang = key.removesuffix(".utf8")
        if lang.startswith("en") or not text.strip():
            continue
        out.setdefault(lang, text.strip())
    return out


def build_tuxpaint_dataset(out: str | os.PathLike[str], *, progress: ProgressFn | None = None) -> Path:
    """Write ``out/tuxpaint-<lang>.jsonl`` for English and every locale with at least
    ``MIN_ITEMS_PER_LANGUAGE`` stamps (absolute PNG paths; nothing is copied). Returns the English file.

    Lines are ``{"id", "image", "captions", "meta": {"category", "licence", "source", "split"}}``
    where ``id`` is the stamp's path under the stamps folder without extension.
    """
    root = find_root()
    pngs = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".png"))
    by_lang: dict[str, list[str]] = {}
    for n, png in enumerate(pngs, start=1):
        txt = Path(png[: -len(".png")] + ".txt")
        if not txt.is_file():
            continue  # no description: nothing to caption it with
        texts = read_description(txt)
        if "en" not in texts:
            continue
        rel = os.path.relpath(png, root)[: -len(".png")]
        meta = {"category": rel.split("/", 1)[0], "licence": LICENCE, "source": "tuxpaint-stamps-default",
                "split": split_of(rel)}
        for lang, text in texts.items():
            by_lang.setdefault(lang, []).append(json.dumps(
                {"id": rel, "image": png, "captions": [text], "meta": meta}, ensure_ascii=False))
        if progress and (n % 100 == 0 or n == len(pngs)):
            progress(n, len(pngs))
    if not by_lang.get("en"):
        raise InputError(f"no captioned PNG stamps under {root}; {INSTALL_HINT}")
    folder = Path(out)
    for lang, lines in by_lang.items():
        if lang == "en" or len(lines) >= MIN_ITEMS_PER_LANGUAGE:
            atomic_write_bytes(folder / f"tuxpaint-{lang}.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    return folder / "tuxpaint-en.jsonl"
