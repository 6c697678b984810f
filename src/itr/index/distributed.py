"""``itr index --engine ray``: the encode step as a Ray Data pipeline, on one machine or a cluster.

Why Ray Data: it streams blocks between stages with back-pressure, runs stateful model actors in a
pool, and restarts dead actors and retries their tasks (``max_restarts=-1``, ``max_task_retries=-1``
for actor pools) without any code here. ITR writes no scheduler of its own.

The job:

1. **plan** (driver): the same comparison with the index as ``build_index`` (new and changed items
   are to encode; items gone from the source are deleted). The items to encode are cut into shards
   of ``shard_size`` in source order; a shard's key hashes its items' ids and signatures, the model
   fingerprint and the representation, so the same work always has the same key.
2. **read + decode + encode** (an actor pool, one model per actor): each actor reads and decodes
   a shard's images in threads (draft mode, pixel limit; Pillow releases the GIL) while its model
   encodes the previous batch, exactly as the in-process path does, then encodes the captions (and
   sparse vectors for ``--repr sparse|both``). Decoding in separate Ray tasks was measured first:
   their CPU reservations competed with the actors' and the job ran 2.2× slower than in-process on
   2 cores. Bad files become one-line failures, never a crash. Each actor checks it loaded the
   model the driver described (same fingerprint): a node with another checkpoint under the same
   name is refused.
3. **write** (Ray tasks): each shard becomes a segment folder under ``INDEX/.shards/KEY``,
   written to a temporary name and renamed, so a shard folder is complete or absent.
4. **merge** (driver): shards become segments of the index in one commit with the deletions;
   then the usual compaction and approximate-index steps run.

Resumable: finished shard folders survive an interruption, and the next run (same source, same
model) finds their keys and sends only the missing shards to Ray. Exactly once: a shard retried
after a worker died writes the same key, the first complete folder wins, and the merge adopts
each key once, so no item is lost or duplicated.

On a cluster (``--ray-address``), the image files and the index folder must be at the same paths on
every node (shared storage), and ITR must be installed in the workers' environment.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, batched, display_path, read_jsonl, require, write_jsonl
from ..collection import OnError, SourceItem, SourceScan
from ..encoders.base import Encoder
from ..errors import IncompatibleModelError, InputError, ItrError
from ..sparse.encoder import SparseEncoder
from .build import BuildOptions, BuildReport, encode_segment, update_index
from .writer import SHARDS_DIR, IndexWriter, write_segment_files

FAILED = "failed.jsonl"


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and how wide the Ray job runs.

    Attributes:
        address: a Ray cluster (``ray://host:10001`` or ``host:6379``, as ``ray.init`` takes it);
            None starts Ray inside this process on this machine.
        actors: encoder actors in the pool (default: as many as the cluster's CPUs allow).
        shard_size: items per shard: the unit of work, of resumption and of one new segment.
        cpus_per_actor, gpus_per_actor: resources each encoder actor reserves; it decodes with
            that many threads and runs the model with as many.
    """

    address: str | None = None
    actors: int | None = None
    shard_size: int = 1024
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


def shard_key(items: Sequence[SourceItem], fingerprint: str, reprs: Sequence[str], sparse_fp: str | None) -> str:
    h = hashlib.sha256(f"{fingerprint}|{','.join(reprs)}|{sparse_fp}".encode())
    for it in items:
        h.update(f"\n{it.id}\t{it.signature}".encode())
    return h.hexdigest()[:24]


def _item_json(it: SourceItem) -> dict[str, Any]:
    return {"id": it.id, "image": it.image, "captions": list(it.captions), "meta": it.meta, "signature": it.signature}


def _item_from(d: dict[str, Any]) -> SourceItem:
    return SourceItem(id=d["id"], image=d["image"], captions=tuple(d["captions"]), meta=d["meta"],
                      signature=d["signature"])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


class EncodeActor:
    """Ray stage 2: one model per actor; per shard, ``encode_segment`` (images read and decoded in
    ``options.workers`` threads while the model runs, then the captions), as in-process builds do."""

    def __init__(self, spec: str, fingerprint: str, sparse_spec: str | None, options: BuildOptions,
                 keep_dense: bool) -> None:
        import torch

        from ..encoders.registry import load_encoder

        torch.set_num_threads(options.workers or 1)  # Ray sets 1 thread per reserved CPU; use what was reserved
        self.encoder = load_encoder(spec)
        if self.encoder.fingerprint != fingerprint:
            raise IncompatibleModelError(
                f"model '{spec}' on Ray node {os.uname().nodename} has fingerprint {self.encoder.fingerprint}, the "
                f"driver's has {fingerprint}; every node must have the same checkpoint")
        self.sparse: SparseEncoder | None = None
        if sparse_spec is not None:
            from ..sparse.encoder import load_sparse_encoder

            self.sparse = load_sparse_encoder(sparse_spec, self.encoder)
        self.options = replace(options, on_error=OnError.SKIP)  # failures are reported at the merge
        self.keep_dense = keep_dense
        _record_pid()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("key", "planned", "items", "texts", "failed", "images",
                                                     "text_vectors", "sparse_images", "sparse_texts")}
        for key, items_json in zip(batch["key"], batch["items"], strict=True):
            chunk = [_item_from(d) for d in json.loads(items_json)]
            seg = encode_segment(chunk, self.encoder, self.options, sparse=self.sparse, keep_dense=self.keep_dense)
            for name, value in (("key", key), ("planned", len(chunk)), ("items", json.dumps(seg.items)),
                                ("texts", json.dumps(seg.texts)), ("failed", json.dumps(seg.failed)),
                                ("images", _npy_bytes(seg.images)), ("text_vectors", _npy_bytes(seg.text_vectors)),
                                ("sparse_images", _csr_bytes(seg.sparse_images) if self.sparse else b""),
                                ("sparse_texts", _csr_bytes(seg.sparse_texts) if self.sparse else b"")):
                out[name].append(value)
        return out


def write_shards(batch: dict[str, Any], *, shards_dir: str, sparse_info: dict[str, Any] | None) -> dict[str, list[Any]]:
    """Ray stage 3: each shard to ``shards_dir/KEY`` (a segment folder, renamed into place whole)."""
    for row in range(len(batch["key"])):
        key = str(batch["key"][row])
        final = Path(shards_dir) / key
        if final.is_dir():  # a retried task finds the first attempt's complete folder: keep it
            continue
        tmp = Path(shards_dir) / f".{key}.{uuid.uuid4().hex}.tmp"
        sparse = (_csr_load(batch["sparse_images"][row]), _csr_load(batch["sparse_texts"][row])) if sparse_info \
            else (None, None)
        write_segment_files(tmp, json.loads(batch["items"][row]), _npy_load(batch["images"][row]),
                            json.loads(batch["texts"][row]), _npy_load(batch["text_vectors"][row]), *sparse, sparse_info)
        write_jsonl(tmp / FAILED, [{"reason": r} for r in json.loads(batch["failed"][row])])
        try:
            os.rename(tmp, final)
        except OSError:  # another attempt renamed first
            shutil.rmtree(tmp, ignore_errors=True)
    return {"key": list(batch["key"]), "planned": list(batch["planned"])}


def _csr_bytes(matrix: Any) -> bytes:
    from scipy import sparse as sp

    buf = io.BytesIO()
    sp.save_npz(buf, matrix.tocsr(), compressed=False)
    return buf.getvalue()


def _csr_load(data: bytes) -> Any:
    from scipy import sparse as sp

    return sp.load_npz(io.BytesIO(data)).tocsr()


def _record_pid() -> None:
    """Tests kill a live encoder actor: they learn its pid from this file."""
    folder = os.environ.get("ITR_RAY_PID_DIR")
    if folder:
        Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()), encoding="ascii")


def build_index_ray(scan: SourceScan, encoder: Encoder, out: str | os.PathLike[str],
                    options: BuildOptions | None = None, ray_options: RayOptions | None = None,
                    progress: ProgressFn | None = None, sparse: SparseEncoder | None = None,
                    ann_progress: ProgressFn | None = None) -> BuildReport:
    """``build_index`` with the encode step on Ray (see the module docstring). The index is the same
    as an in-process build's; ``report.resumed_shards`` counts shards a previous run had finished."""
    ray = require("ray", "ray", "itr index --engine ray")
    options = options or BuildOptions()
    ray_options = ray_options or RayOptions()
    if ray_options.shard_size < 1:
        raise InputError(f"--shard-size must be at least 1 (got {ray_options.shard_size})")
    with update_index(scan, encoder, out, options, sparse, ann_progress) as (writer, report, live, todo):
        reprs = writer.manifest["representations"]
        sparse_fp = (writer.manifest.get("sparse") or {}).get("fingerprint")
        shards = [(shard_key(chunk, encoder.fingerprint, reprs, sparse_fp), list(chunk))
                  for chunk in batched(todo, ray_options.shard_size)]
        shards_dir = writer.root / SHARDS_DIR
        shards_dir.mkdir(parents=True, exist_ok=True)
        keys = {k for k, _ in shards}
        for stale in shards_dir.iterdir():  # another job's shards, or half-written ones
            if stale.name not in keys:
                shutil.rmtree(stale, ignore_errors=True)
        pending = [(k, chunk) for k, chunk in shards if not (shards_dir / k).is_dir()]
        report.resumed_shards = len(shards) - len(pending)
        done = sum(len(chunk) for k, chunk in shards if (shards_dir / k).is_dir())
        if progress:
            progress(done, len(todo))
        if pending:
            _run_pipeline(ray, pending, encoder, sparse if "sparse" in reprs else None, options, ray_options,
                          shards_dir, writer.manifest.get("sparse") if "sparse" in reprs else None,
                          "dense" in reprs, progress, done, len(todo))
        _merge(writer, shards, shards_dir, live, options, report)
        shutil.rmtree(shards_dir, ignore_errors=True)
    return report


def _run_pipeline(ray: Any, pending: list[tuple[str, list[SourceItem]]], encoder: Encoder,
                  sparse: SparseEncoder | None, options: BuildOptions, ro: RayOptions, shards_dir: Path,
                  sparse_info: dict[str, Any] | None, keep_dense: bool, progress: ProgressFn | None,
                  done: int, total: int) -> None:
    import logging

    for name in ("ray", "ray.data"):  # Ray's own INFO lines would bury ITR's progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=ro.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("ITR_")}})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = ro.address or "a local Ray instance"
            raise InputError(f"could not start or reach {where}: {str(exc).strip().splitlines()[0]}") from None
    try:
        from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = min(len(pending), ro.actors or max(1, int(cpus // max(ro.cpus_per_actor, 1))))  # idle actors: no
        rows = [{"key": k, "items": json.dumps([_item_json(it) for it in chunk])} for k, chunk in pending]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(EncodeActor, batch_size=1, compute=ActorPoolStrategy(size=actors),
                            num_cpus=ro.cpus_per_actor, num_gpus=ro.gpus_per_actor,
                            fn_constructor_kwargs={"spec": encoder.spec, "fingerprint": encoder.fingerprint,
                                                   "sparse_spec": sparse.spec if sparse is not None else None,
                                                   "options": replace(options, workers=max(1, int(ro.cpus_per_actor))),
                                                   "keep_dense": keep_dense})
        # Writing a shard is file I/O: it reserves no CPU, or with every CPU held by encoder actors
        # (the usual set-up) the writes would wait, outputs pile up and back-pressure stalls the
        # encoders. Two writers at a time bound the I/O.
        ds = ds.map_batches(write_shards, batch_size=1, num_cpus=0, compute=TaskPoolStrategy(size=min(2, len(rows))),
                            fn_kwargs={"shards_dir": str(shards_dir), "sparse_info": sparse_info})
        for row in ds.iter_rows():
            done += int(row["planned"])
            if progress:
                progress(done, total)
    except ray.exceptions.RayError as exc:  # a worker's error, wrapped: show the ITR one-liner if it is one
        cause = _itr_cause(exc)
        if cause is not None:
            raise cause from None
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"the Ray job failed: {type(exc).__name__}: {first}; finished shards are kept, run the "
                         "same command again to resume") from exc
    finally:
        if started_here:
            ray.shutdown()


def _itr_cause(exc: BaseException) -> ItrError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ItrError):
            return seen
        cause = getattr(seen, "cause", None)
        if isinstance(cause, ItrError):
            return cause
        seen = seen.__cause__ or seen.__context__
    return None


def _merge(writer: IndexWriter, shards: list[tuple[str, list[SourceItem]]], shards_dir: Path,
           live: dict[str, Any], options: BuildOptions, report: BuildReport) -> None:
    """Every shard becomes a segment, with the deletions, in one commit (in source order)."""
    for key, _ in shards:
        folder = shards_dir / key
        if not folder.is_dir():
            raise InputError(f"{display_path(folder)}: shard missing after the Ray job; run the command again")
        failed = [r["reason"] for r in read_jsonl(folder / FAILED)]
        if failed and options.on_error is OnError.STOP:
            raise InputError(failed[0] + " (stopped: --on-error stop; nothing was merged, finished shards are kept)")
        report.failed.extend(failed)
    for key, chunk in shards:
        folder = shards_dir / key
        (folder / FAILED).unlink(missing_ok=True)
        items = read_jsonl(folder / "items.jsonl")
        kept = {it["id"] for it in items}
        for it in chunk:  # a changed item's old version goes in the same commit as its new one
            if it.id in live:
                writer.delete(live[it.id].segment, [it.id])
        report.updated += sum(i in live for i in kept)
        report.added += sum(i not in live for i in kept)
        report.staged.extend(it["id"] for it in items)
        report.images_encoded += sum(it.get("row") is not None for it in items)
        report.texts_encoded += sum(int(it.get("captions", 0)) for it in items)
        if items:
            writer.adopt_segment(folder, items)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    writer.commit(complete=True)
