"""The adversarial corpus: bad images, bad JSONL lines, odd file names and hostile ``meta`` values,
written by one generator that the CLI, service and HTTP tests all use (imported as ``hostile``).

Each case says what must happen to it: indexed (``ok``), or refused with a reason that names it
(``reason``, a substring of the one-line message). Whatever else a run does, one bad case costs
only itself: never the run, never the index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from itr.testing import solid_image

NON_UTF8_NAME = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not valid UTF-8
NON_UTF8_ID = "caf\\xe9.png"  # how ITR names it: the byte as an escape


@dataclass(frozen=True)
class Case:
    name: str
    reason: str | None = None  # None: must be indexed / answered

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class MetaCase:
    name: str
    meta: str  # the JSON text of the field
    reason: str


HOSTILE_META = [
    MetaCase("deep", '{"a":' * 1000 + "1" + "}" * 1000, "nested"),
    MetaCase("deep-40", '{"a":' * 40 + "1" + "}" * 40, "nested more than 32 levels"),
    MetaCase("huge-int", '{"n": ' + "7" * 5000 + "}", "more than 4300 digits"),
    MetaCase("nan", '{"x": NaN}', "NaN is not a JSON number"),
    MetaCase("infinity", '{"x": -Infinity}', "-Infinity is not a JSON number"),
    MetaCase("too-big", json.dumps({"blob": "x" * 20_000}), "the limit is 16384"),
    MetaCase("lone-surrogate", '{"k": "\\udc00"}', "lone surrogate"),
]


def wide_png(path: Path, size: tuple[int, int]) -> Path:
    """A one-colour image of extreme aspect ratio: a few hundred bytes that a careless resize blows
    up to gigabytes (shorter side to 224 makes 60000 x 1 into 13440000 x 224)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 40, 40)).save(path)
    return path


def wide_png_bytes(size: tuple[int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def write_hostile_images(root: Path) -> list[Case]:
    """Images a real photo folder can hold, good and bad, under ``root``; returns the cases by the
    id ITR gives them (the path relative to ``root``)."""
    cases: list[Case] = []
    solid_image(root / "good-red.png", "red")
    solid_image(root / "good-blue.jpg", "blue", size=(640, 480))
    cases += [Case("good-red.png"), Case("good-blue.jpg")]
    for w, h in ((8000, 1), (1, 8000), (60000, 1)):
        wide_png(root / f"wide-{w}x{h}.png", (w, h))
        cases.append(Case(f"wide-{w}x{h}.png"))
    solid_image(root / NON_UTF8_NAME, "green")
    cases.append(Case(NON_UTF8_ID))
    solid_image(root / "line\nbreak.png", "yellow")
    cases.append(Case("line\\x0abreak.png"))
    (root / "empty.png").write_bytes(b"")
    cases.append(Case("empty.png", "empty file"))
    (root / "text.png").write_text("not pixels at all")
    cases.append(Case("text.png", "not a readable image"))
    full = (root / "good-red.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    cases.append(Case("truncated.png", "truncated"))
    Image.new("1", (12000, 12000)).save(root / "bomb.png")  # 144 MP in a small file
    cases.append(Case("bomb.png", "too large"))
    os.mkfifo(root / "fifo.png")  # opening it would block until a writer comes
    cases.append(Case("fifo.png", "not a regular file (a FIFO)"))
    return cases


@dataclass
class HostileSource:
    jsonl: Path
    ok_ids: list[str] = field(default_factory=list)
    bad_lines: dict[int, str] = field(default_factory=dict)  # line number -> reason substring


def write_hostile_jsonl(root: Path) -> HostileSource:
    """A JSONL source whose good lines are interleaved with every kind of bad line found so far."""
    solid_image(root / "img" / "a.png", "red")
    solid_image(root / "img" / "b.png", "blue")
    lines: list[tuple[str, str | None, str | None]] = [  # (line, id if good, reason if bad)
        ('{"image": "img/a.png", "captions": ["a red square"], "id": "a"}', "a", None),
        ('{"captions": ["x"], "id": "deep", "meta": ' + '{"a":' * 1000 + "1" + "}" * 1000 + "}", None, "nested"),
        ('{"captions": ["x"], "id": "big", "meta": {"n": ' + "7" * 5000 + "}}", None, "more than 4300 digits"),
        ('{"captions": ["bad \\ud800 text"], "id": "surrogate"}', None, "lone surrogate"),
        ('{"captions": ["x"], "id": "nan", "meta": {"v": NaN}}', None, "NaN is not a JSON number"),
        ('{"captions": ["x"], "id": "a/similar"}', None, "reserved by the HTTP API"),
        ('{"captions": ["x"], "id": "a/thumbnail"}', None, "reserved by the HTTP API"),
        ('{"captions": ["x"], "id": "new\\nline"}', None, "control characters"),
        ('{"captions": ["x"], "id": "../up"}', None, "'..' path segments"),
        ('{"image": "img/b.png", "captions": ["a blue square"], "id": "b", "meta": {"note": "caf\\u00e9 \\u2615"}}',
         "b", None),
        ('{"image": "img/a.png", "captions": ["cut sh', None, "cut short"),
        ('{"captions": ["text only item"], "id": "t"}', "t", None),
    ]
    path = root / "hostile.jsonl"
    path.write_text("\n".join(text for text, _, _ in lines) + "\n")
    src = HostileSource(path)
    for n, (_, item_id, reason) in enumerate(lines, 1):
        if item_id is not None:
            src.ok_ids.append(item_id)
        else:
            assert reason is not None
            src.bad_lines[n] = reason
    return src


def strict_json(text: str) -> object:
    """Parse as RFC 8259 JSON only: NaN/Infinity are errors (Python's json accepts them)."""
    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)
