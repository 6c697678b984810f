"""Sources in the formats big collections come in: webdataset tar shards and parquet/CSV tables.

* **webdataset shards** as img2dataset writes them: ``{00000..00099}.tar`` (brace ranges expanded
  as webdataset does, with ``braceexpand``), members grouped by key (the name up to its first dot):
  ``KEY.jpg`` (or png, webp, ...), ``KEY.txt`` (the caption), ``KEY.json`` (metadata, kept in
  ``meta``). Images stay inside the shards: each item names its member by offset and size
  (``itr.images.tar_ref``), so encoding, thumbnails and re-ranking read it with one seek.
  Uncompressed tars only (what img2dataset writes; a gzipped shard cannot be read by seeking).
* **tables**: ``.parquet`` (read in record batches) or ``.csv``/``.tsv``, with an image column (a
  path, relative to the table's folder, or an http(s) URL) and a caption column (a string or a list
  of strings); ``--image-col``/``--caption-col``/``--id-col`` name them when the usual names
  (image/image_path/path/url, caption/text) are not there. Other columns go to ``meta``.

A bad shard, member or row costs that item (one problem line each), never the scan. Re-indexing is
incremental as for any source: each item's signature covers its shard (size, mtime, offset) or its
file, and its caption and meta, so an interrupted run resumes and a re-run encodes only what changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._utils import display_path, require
from .errors import InputError
from .images import IMAGE_EXTENSIONS, URL_PREFIXES, tar_ref
from .records import check_item_id, check_meta, check_text

MAX_SIDECAR_BYTES = 1 << 20  # a caption or JSON member above 1 MiB is not a caption
IMAGE_COLUMNS = ("image", "image_path", "path", "filepath", "file", "url", "image_url")
CAPTION_COLUMNS = ("caption", "captions", "text", "title")
ID_COLUMNS = ("id", "key")


def is_shard_spec(path: str) -> bool:
    """A shard or a pattern of shards (``dir/{00000..00099}.tar``)."""
    return path.endswith(".tar")


def is_table_path(path: str) -> bool:
    return Path(path).suffix.lower() in (".parquet", ".csv", ".tsv")


def expand_shards(spec: str) -> list[Path]:
    """``dir/{00000..00009}.tar`` -> the shard files (webdataset's brace syntax)."""
    if "{" in spec:
        braceexpand = require("braceexpand", "sources", "webdataset shard patterns")
        names = list(braceexpand.braceexpand(spec))
    else:
        names = [spec]
    return [Path(n) for n in names]


def _signature(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(slots=True)
class _Member:
    offset: int
    size: int
    name: str


def scan_shards(spec: str) -> tuple[str, list[Any], list[str]]:
    """(source name, items, problems) of webdataset shards."""
    from .collection import SourceItem

    shards = expand_shards(spec)
    items: list[SourceItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    for shard in shards:
        shown = display_path(shard)
        if not shard.is_file():
            problems.append(f"{shown}: no such shard")
            continue
        path = str(shard.resolve())
        st = shard.stat()
        groups: dict[str, dict[str, _Member]] = {}
        sidecars: dict[tuple[str, str], bytes] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    folder, base = posixpath.split(m.name)
                    if "." not in base or base.startswith("."):
                        continue
                    stem, ext = base.split(".", 1)
                    key = posixpath.join(folder, stem)
                    ext = ext.lower()
                    groups.setdefault(key, {})[ext] = _Member(m.offset_data, m.size, m.name)
                    if ext in ("txt", "json") and m.size <= MAX_SIDECAR_BYTES:
                        f = tar.extractfile(m)
                        if f is not None:
                            sidecars[(key, ext)] = f.read()
        except tarfile.ReadError as exc:
            hint = " (compressed shards cannot be read by seeking: decompress them)" if "compress" in str(exc) or \
                path.endswith((".gz", ".xz", ".bz2")) else ""
            problems.append(f"{shown}: not a readable tar shard ({exc}){hint}; items read before the damage are kept")
        except OSError as exc:
            problems.append(f"{shown}: cannot read ({exc.strerror or exc})")
            continue
        for key, parts in groups.items():
            where = f"{shown}//{key}"
            image = next((parts[e] for e in parts if f".{e}" in IMAGE_EXTENSIONS), None)
            try:
                captions = []
                if (key, "txt") in sidecars:
                    text = check_text(sidecars[(key, "txt")].decode("utf-8"), f"{where}.txt").strip()
                    captions = [text] if text else []
                meta: dict[str, Any] = {}
                if (key, "json") in sidecars:
                    value = json.loads(sidecars[(key, "json")].decode("utf-8"))
                    meta = check_meta(value if isinstance(value, dict) else {"json": value}, f"{where}.json")
                if image is None and not captions:
                    raise InputError(f"{where}: no image member and no caption")
                check_item_id(key, where)
                if key in seen:
                    raise InputError(f"{where}: duplicate key '{key}' (the first one is kept)")
            except (InputError, UnicodeDecodeError, ValueError) as exc:
                problems.append(str(exc) if isinstance(exc, InputError) else f"{where}: unreadable caption/metadata ({exc})")
                continue
            seen.add(key)
            ref = tar_ref(path, image.name, image.offset, image.size) if image is not None else None
            sig = f"{st.st_size}:{st.st_mtime_ns}:" + _signature(ref, captions, meta)
            items.append(SourceItem(id=key, image=ref, captions=tuple(captions), meta=meta, signature=sig))
    return spec, items, problems


@dataclass(frozen=True, slots=True)
class TableColumns:
    """Which columns of a table hold the image, the caption(s) and the id (None: the usual names)."""

    image: str | None = None
    caption: str | None = None
    id: str | None = None


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    if path.suffix.lower() == ".parquet":
        pq = require("pyarrow.parquet", "export", "parquet sources")
        pf = pq.ParquetFile(path)

        def batches() -> Iterator[dict[str, Any]]:
            for batch in pf.iter_batches(batch_size=4096):
                yield from batch.to_pylist()

        return list(pf.schema_arrow.names), batches()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh, delimiter=delimiter), [])

    def lines() -> Iterator[dict[str, Any]]:  # opens the file only once iterated, and closes it
        with open(path, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh, delimiter=delimiter)

    return header, lines()


def _pick(names: list[str], wanted: str | None, usual: tuple[str, ...], what: str, flag: str, where: str,
          required: bool) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise InputError(f"{where}: no column '{wanted}' ({flag}); columns: {', '.join(names[:30])}")
        return wanted
    found = next((c for c in usual if c in names), None)
    if found is None and required:
        raise InputError(f"{where}: no {what} column (looked for {', '.join(usual)}); name it with {flag}; "
                         f"columns: {', '.join(names[:30])}")
    return found


def _meta_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, list | tuple):
        return [_meta_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _meta_value(x) for k, x in v.items()}
    return str(v)


def scan_table(path: Path, columns: TableColumns | None = None) -> tuple[str, list[Any], list[str]]:
    """(source name, items, problems) of a parquet/CSV/TSV table."""
    from .collection import SourceItem, file_signature

    columns = columns or TableColumns()
    path = path.resolve()
    shown = display_path(path)
    try:
        names, rows = _rows(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{shown}: cannot read the table ({exc})") from exc
    image_col = _pick(names, columns.image, IMAGE_COLUMNS, "image", "--image-col", shown, False)
    caption_col = _pick(names, columns.caption, CAPTION_COLUMNS, "caption", "--caption-col", shown, False)
    id_col = _pick(names, columns.id, ID_COLUMNS, "id", "--id-col", shown, False)
    if image_col is None and caption_col is None:
        raise InputError(f"{shown}: no image column ({', '.join(IMAGE_COLUMNS)}) and no caption column "
                         f"({', '.join(CAPTION_COLUMNS)}); name them with --image-col/--caption-col; "
                         f"columns: {', '.join(names[:30])}")
    items: list[SourceItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    base = path.parent
    try:
        for n, row in enumerate(rows, start=1):
            where = f"{shown} row {n}"
            try:
                raw = row.get(image_col) if image_col else None
                image = None
                file_sig = "url"
                if isinstance(raw, str) and raw.strip():
                    raw = raw.strip()
                    if raw.startswith(URL_PREFIXES):
                        image = raw
                    else:
                        image = raw if os.path.isabs(raw) else str((base / raw).resolve())
                        try:
                            file_sig = file_signature(image)
                        except OSError as exc:
                            raise InputError(f"{where}: image {raw} cannot be read ({exc.strerror})") from exc
                cap = row.get(caption_col) if caption_col else None
                caps = cap if isinstance(cap, list | tuple) else [cap] if cap is not None else []
                captions = [check_text(str(c), f"{where}: caption").strip() for c in caps if c is not None]
                captions = [c for c in captions if c]
                if image is None and not captions:
                    raise InputError(f"{where}: no image and no caption")
                item_id = row.get(id_col) if id_col else None
                item_id = str(item_id) if item_id not in (None, "") else (raw if image else f"row-{n}")
                check_item_id(item_id, where)
                if item_id in seen:
                    raise InputError(f"{where}: duplicate id '{item_id}' (the first row with it is kept)")
                skip = {image_col, caption_col, id_col}
                meta = check_meta({k: _meta_value(v) for k, v in row.items() if k not in skip and v not in (None, "")},
                                  f"{where}: metadata columns")
            except InputError as exc:
                problems.append(str(exc))
                continue
            seen.add(item_id)
            sig = file_sig + ":" + _signature(image, captions, meta)
            items.append(SourceItem(id=item_id, image=image, captions=tuple(captions), meta=meta, signature=sig))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        problems.append(f"{shown}: reading stopped ({exc}); the rows before it are kept")
    return str(path), items, problems
