"""Checking the fields of an item (id, captions, meta) wherever it comes from: a JSONL line, an
HTTP request, the Python API.

One set of rules, so that what one entry point accepts every other layer can store, print as JSON,
put in a URL and read back: an item that passes here never crashes the tokenizer, the JSON encoder
or the router later, and one that fails costs only itself, with a one-line reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from typing import Any

from ._utils import display_path
from .errors import InputError

MAX_META_DEPTH = 32
"""Nesting levels a ``meta`` object may have (JSON itself allows any; Python's parser and encoder
recurse, and a 1000-level object costs a RecursionError instead of one refused item)."""

MAX_ID_CHARS = 4096
RESERVED_ID_SUFFIXES = ("/similar", "/thumbnail")
"""An id ending so would be read by the HTTP router as a sub-resource of another item."""


class FieldError(InputError):
    """A field of a request or record has the wrong type, shape or size (HTTP 422)."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259); write null or a string")


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` that turns every way a text can fail into one InputError naming ``where``.

    Besides syntax errors: nesting too deep for the parser (RecursionError), integers of more than
    4300 digits (ValueError since Python 3.11) and ``NaN``/``Infinity``, which are not JSON and would
    make every later JSON output invalid.
    """
    body = text.rstrip("\r\n")
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(body.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise InputError(f"{where}: not valid JSON (the line ends in the middle of a value: cut short?)") from None
        raise InputError(f"{where}: not valid JSON ({exc.msg.removesuffix(' at')}, at column {exc.pos + 1})") from None
    except RecursionError:
        raise InputError(f"{where}: not usable JSON (nested too deeply; at most {MAX_META_DEPTH} levels)") from None
    except ValueError as exc:
        reason = str(exc).split(";")[0]
        if "digits" in reason:
            reason = "an integer has more than 4300 digits; write it as a string"
        raise InputError(f"{where}: not usable JSON ({reason})") from None


def check_text(value: str, where: str) -> str:
    """``value`` unchanged if it is valid Unicode text (encodable as UTF-8), else a FieldError.

    JSON can spell a lone surrogate (``"\\ud800"``); Python decodes it to a string no UTF-8 encoder,
    tokenizer or HTTP response can take.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        ch = value[exc.start]
        raise FieldError(f"{where}: holds U+{ord(ch):04X}, a lone surrogate that is not a character; "
                         "fix the text's encoding") from None
    return value


def check_meta(meta: Any, where: str, *, max_bytes: int | None = None, max_depth: int = MAX_META_DEPTH) -> dict[str, Any]:
    """``meta`` if it is a JSON object every JSON encoder can write back (finite numbers, valid text,
    at most ``max_depth`` levels, at most ``max_bytes`` as JSON), else a FieldError. ``where`` names
    the field (``items.jsonl:3: 'meta'``, ``field 'meta'``)."""
    if not isinstance(meta, dict):
        raise FieldError(f"{where}: must be a JSON object")
    stack: list[tuple[Any, int]] = [(meta, 1)]
    while stack:  # iterative: the point is to refuse what would overflow a recursive walk
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise FieldError(f"{where}: nested more than {max_depth} levels deep")
            if isinstance(value, dict):
                for key, sub in value.items():
                    if not isinstance(key, str):
                        raise FieldError(f"{where}: keys must be strings")
                    check_text(key, f"{where}: a key")
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in value)
        elif isinstance(value, str):
            check_text(value, f"{where}: a value")
        elif isinstance(value, float) and not math.isfinite(value):
            raise FieldError(f"{where}: holds {value}, which JSON cannot represent")
        elif value is not None and not isinstance(value, bool | int | float):
            raise FieldError(f"{where}: holds a {type(value).__name__}, which is not a JSON value")
    if max_bytes is not None:
        size = len(json.dumps(meta, ensure_ascii=False).encode())
        if size > max_bytes:
            raise FieldError(f"{where}: {size} bytes as JSON; the limit is {max_bytes}")
    return meta


def id_problem(item_id: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    """Why ``item_id`` cannot be an item id, or None. Every id must survive JSON, a URL path and a
    line-oriented listing: no control characters or lone surrogates, no surrounding spaces, no ``.``
    or ``..`` path segment (clients normalise them away) and no reserved suffix of the HTTP routes."""
    if not item_id or len(item_id) > max_chars:
        return f"must be 1-{max_chars} characters"
    if item_id != item_id.strip():
        return "must not start or end with spaces"
    bad = next((ch for ch in item_id if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"must not hold control characters or lone surrogates (U+{ord(bad):04X})"
    if any(seg in (".", "..") for seg in item_id.split("/")):
        return "must not have '.' or '..' path segments"
    if item_id.endswith(RESERVED_ID_SUFFIXES):
        return f"must not end in {' or '.join(RESERVED_ID_SUFFIXES)} (reserved by the HTTP API)"
    return None


def check_item_id(item_id: str, where: str, max_chars: int = MAX_ID_CHARS) -> str:
    problem = id_problem(item_id, max_chars)
    if problem is not None:
        raise InputError(f"{where}: id {json.dumps(item_id)[:80]} {problem}")
    return item_id


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable_path(path: str | os.PathLike[str]) -> str:
    """A relative path as ids and responses show it: the bytes of a name that is not UTF-8 and any
    control character (a newline in a file name) as ``\\xNN`` escapes, so that it survives JSON,
    URLs and line-oriented output. A folder source's item id is its image's printable path."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", display_path(path))


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that any strict JSON encoder can write (RFC 8259): NaN and infinities
    become null, and strings that are not valid Unicode (file names of another encoding held as
    surrogate escapes) get backslash escapes in place of the bad code points."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape" if _only_escapes(value) else "backslashreplace").decode(
                "utf-8", "backslashreplace")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _only_escapes(value: str) -> bool:
    """Whether every surrogate in ``value`` is a surrogate escape of one byte (U+DC80-U+DCFF)."""
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in value)
