"""Reading what to index: a folder of images, or a JSONL file of images with captions.

JSONL lines look like ``{"image": "a.jpg", "captions": ["..."], "id": "...", "meta": {...}}``;
``id`` and ``meta`` are optional, relative image paths resolve against the JSONL file's folder, and a
line may have captions and no image (a text-only item).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ._utils import display_path
from .errors import InputError
from .images import IMAGE_EXTENSIONS, file_kind, is_image_path
from .records import check_item_id, check_meta, check_text, id_problem, parse_json, printable_path
from .source_formats import TableColumns, is_shard_spec, is_table_path, scan_shards, scan_table


class OnError(StrEnum):
    """What a batch job does with a bad item: record it and go on, or stop at the first one."""

    SKIP = "skip"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One item to index.

    Attributes:
        id: stable id (folder sources: the path relative to the folder).
        image: absolute image path, or None for a text-only item.
        captions: the item's texts.
        meta: free-form metadata returned with search hits.
        signature: changes whenever the item must be encoded again (file size/mtime, captions, meta).
    """

    id: str
    image: str | None
    captions: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    signature: str = ""


@dataclass(slots=True)
class SourceScan:
    """The items of a source, plus one line per problem found while reading it."""

    source: str
    items: list[SourceItem]
    problems: list[str]


def file_signature(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def scan_source(path: str | os.PathLike[str], *, on_error: OnError = OnError.SKIP,
                columns: TableColumns | None = None) -> SourceScan:
    """Read a folder, a JSONL file, webdataset shards (``shard.tar``, ``dir/{00000..00099}.tar``) or a
    parquet/CSV/TSV table (``columns`` names its image, caption and id columns) into SourceItems.

    Raises:
        InputError: the path is missing, holds no images, or (with ``on_error=STOP``) has a bad line.
    """
    spec = os.fspath(path)
    if is_shard_spec(spec):
        return _finish(*scan_shards(spec), on_error)
    p = Path(path)
    if p.is_file() and is_table_path(spec):
        return _finish(*scan_table(p, columns), on_error)
    if columns is not None and columns != TableColumns():
        raise InputError(f"{display_path(p)}: --image-col/--caption-col/--id-col apply to .parquet/.csv/.tsv tables")
    if not p.exists():
        raise InputError(f"{display_path(p)}: no such file or folder")
    if p.is_dir():
        return _scan_folder(p)
    if not p.is_file():  # reading a FIFO would wait for a writer forever
        raise InputError(f"{display_path(p)}: {file_kind(p.stat().st_mode)}, not a folder or a .jsonl file")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return _scan_jsonl(p, on_error)
    if is_image_path(p):
        raise InputError(f"{display_path(p)}: is a single image; pass the folder that holds it, or a JSONL file")
    raise InputError(f"{display_path(p)}: not a folder, a .jsonl file, .tar shards or a .parquet/.csv/.tsv table")


def _finish(source: str, items: list[SourceItem], problems: list[str], on_error: OnError) -> SourceScan:
    if problems and on_error is OnError.STOP:
        raise InputError(problems[0] + " (stopped: --on-error stop)")
    if not items:
        detail = f"; first problem: {problems[0]}" if problems else ""
        raise InputError(f"{source}: no usable items{detail}")
    return SourceScan(source, items, problems)


def _scan_folder(root: Path) -> SourceScan:
    root = root.resolve()
    items: list[SourceItem] = []
    problems: list[str] = []

    def on_walk_error(exc: OSError) -> None:
        problems.append(f"{display_path(exc.filename or root)}: cannot list folder ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # skip .thumbnails, .git ...
        for name in sorted(filenames):
            if name.startswith(".") or not is_image_path(name):
                continue
            full = os.path.join(dirpath, name)
            try:
                sig = file_signature(full)
            except OSError as exc:
                problems.append(f"{display_path(full)}: cannot read ({exc.strerror})")
                continue
            rel = printable_path(Path(full).relative_to(root).as_posix())
            items.append(SourceItem(id=rel, image=full, signature=sig))
    if not items:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"{display_path(root)}: no images found (looked recursively for {exts})")
    return SourceScan(str(root), items, problems)


def _parse_line(line: str, where: str, base: Path) -> SourceItem:
    """One JSONL line as an item; every field is checked here, so one bad line costs one item."""
    rec = parse_json(line, where)
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object with 'image' and/or 'captions'")
    captions = rec.get("captions", [])
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise InputError(f"{where}: 'captions' must be a list of strings")
    captions = [check_text(c, f"{where}: caption {n}").strip() for n, c in enumerate(captions, 1)]
    captions = [c for c in captions if c]
    image = rec.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise InputError(f"{where}: 'image' must be a non-empty path string")
    if image is not None:
        try:
            os.fsencode(image)  # surrogate escapes of a non-UTF-8 file name are fine; other surrogates not
        except UnicodeEncodeError:
            check_text(image, f"{where}: 'image'")
    if image is None and not captions:
        raise InputError(f"{where}: needs an 'image' path or at least one non-empty caption")
    meta = check_meta(rec.get("meta", {}), f"{where}: 'meta'")
    image_path = None
    file_sig = ""
    if image is not None:
        image_path = str((base / image).resolve()) if not os.path.isabs(image) else image
        try:
            file_sig = file_signature(image_path)
        except OSError as exc:
            raise InputError(f"{where}: image {image} cannot be read ({exc.strerror})") from exc
    item_id = rec.get("id")
    if item_id is None:
        if image is None:
            raise InputError(f"{where}: a text-only item needs an 'id'")
        item_id = printable_path(image)
        if id_problem(item_id) is not None:  # "a/../b.png" names the file "b.png"
            item_id = posixpath.normpath(item_id)
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        raise InputError(f"{where}: 'id' must be a non-empty string or an integer")
    check_item_id(str(item_id), where)
    content = json.dumps({"image": image_path, "captions": captions, "meta": meta}, sort_keys=True)
    sig = file_sig + ":" + hashlib.sha1(content.encode()).hexdigest()[:16]
    return SourceItem(id=str(item_id), image=image_path, captions=tuple(captions), meta=meta, signature=sig)


def _scan_jsonl(path: Path, on_error: OnError) -> SourceScan:
    path = path.resolve()
    base = path.parent
    items: list[SourceItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{display_path(path)}:{lineno}"
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                item = _parse_line(line, where, base)
                if item.id in seen:
                    raise InputError(f"{where}: duplicate id '{item.id}' (the first line with it is kept)")
            except UnicodeDecodeError:
                problem = f"{where}: not UTF-8 text"
            except InputError as exc:
                problem = str(exc)
            except (RecursionError, ValueError, TypeError) as exc:  # a safety net: a line never ends the scan
                problem = f"{where}: unusable line ({type(exc).__name__}: {str(exc)[:200]})"
            else:
                seen.add(item.id)
                items.append(item)
                continue
            if on_error is OnError.STOP:
                raise InputError(problem + " (stopped: --on-error stop)")
            problems.append(problem)
    if not items:
        detail = f"; first problem: {problems[0]}" if problems else ""
        raise InputError(f"{display_path(path)}: no usable items{detail}")
    return SourceScan(str(path), items, problems)
