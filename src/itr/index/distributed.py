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
3. **write** (the same actor): each shard becomes a segment folder under ``INDEX/.shards/KEY``,
   written to a temporary name and renamed, so a shard folder is complete or absent. Only the
   shard's key and size travel back through Ray.
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
import json
import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._utils import ProgressFn, batched, display_path, read_jsonl, require, write_jsonl
from ..collection import OnError, SourceItem, SourceScan
from ..encoders.base import Encoder
from ..errors import IncompatibleModelError, InputError, ItrError
from ..sparse.encoder import SparseEncoder
from .build import BuildOptions, BuildReport, EncodedSegment, encode_segment, update_index
from .writer import SHARDS_DIR, IndexWriter, write_segment_files

FAILED = "failed.jsonl"


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and how wide the Ray job runs.

    Attributes:
        address: a Ray cluster (``ray://host:10001`` or ``host:6379``, as ``ray.init`` takes it);
            None starts Ray inside this process on this machine.
        actors: encoder actors in the pool (default: as many as the cluster's CPUs allow).
        shard_size: items per shard: the unit of work, of resumption and of one new segment. Small
            enough that actors finish together (the last shard runs alone), large enough that a
            shard takes seconds.
        cpus_per_actor, gpus_per_actor: resources each encoder actor reserves; it decodes with
            that many threads and runs the model with as many.
    """

    address: str | None = None
    actors: int | None = None
    shard_size: int = 256
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


class EncodeActor:
    """Ray stage 2+3: one model per actor; per shard, ``encode_segment`` (images read and decoded in
    ``options.workers`` threads while the model runs, then the captions), as in-process builds do,
    then the shard's segment folder written by the actor itself (see ``write_shard``)."""

    def __init__(self, spec: str, fingerprint: str, sparse_spec: str | None, options: BuildOptions,
                 keep_dense: bool, shards_dir: str, sparse_info: dict[str, Any] | None) -> None:
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
        self.shards_dir = Path(shards_dir)
        self.sparse_info = sparse_info
        _record_pid()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"key": [], "planned": []}
        for key, items_json in zip(batch["key"], batch["items"], strict=True):
            key = str(key)
            chunk = [_item_from(d) for d in json.loads(items_json)]
            if not (self.shards_dir / key).is_dir():  # a retried task finds the first attempt's folder: keep it
                seg = encode_segment(chunk, self.encoder, self.options, sparse=self.sparse, keep_dense=self.keep_dense)
                write_shard(self.shards_dir, key, seg, self.sparse_info)
            out["key"].append(key)
            out["planned"].append(len(chunk))
        return out


def write_shard(shards_dir: Path, key: str, seg: EncodedSegment, sparse_info: dict[str, Any] | None) -> None:
    """Ray stage 3: a shard to ``shards_dir/KEY`` (a segment folder, renamed into place whole).

    The encoder actor writes its own shard. A separate Ray Data write stage was measured first: it
    moved every vector through the object store and, with every CPU held by encoder actors, Ray
    started a fresh worker process for each write task (about 1.5 CPU-seconds of imports per shard,
    taken from the encoders on 2 cores).
    """
    final = shards_dir / key
    tmp = shards_dir / f".{key}.{uuid.uuid4().hex}.tmp"
    write_segment_files(tmp, seg.items, seg.images, seg.texts, seg.text_vectors,
                        seg.sparse_images if sparse_info else None, seg.sparse_texts if sparse_info else None,
                        sparse_info)
    write_jsonl(tmp / FAILED, [{"reason": r} for r in seg.failed])
    try:
        os.rename(tmp, final)
    except OSError:  # another attempt renamed first: the first complete folder wins
        shutil.rmtree(tmp, ignore_errors=True)


def _record_pid() -> None:
    """Tests kill a live encoder actor: they learn its pid from this file."""
    folder = os.environ.get("ITR_RAY_PID_DIR")
    if folder:
        Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()), encoding="ascii")


class RaySession:
    """Ray for one job: started on this machine (or connected to ``address``) in a background thread
    from the moment it is created, and shut down by ``close`` if it was started here.

    Why a thread: starting Ray takes about 4 s on 2 cores, mostly process start-ups; the CLI creates
    the session before loading its model, so the two overlap (measured: 3-6 s less per job). The
    thread lives until ``close``: Ray's own processes are started with a parent-death signal, which
    Linux sends when the starting *thread* ends.
    An instance that finds Ray already initialised in this process uses it and leaves it running.
    """

    def __init__(self, address: str | None = None) -> None:
        self.ray = require("ray", "ray", "itr index --engine ray")
        self.address = address
        self.started_here = False
        self._error: InputError | None = None
        self._up = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="itr-ray-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if self.ray.is_initialized():
                return
            if self.address is not None:
                _check_reachable(self.address)
            quiet = logging.getLogger("ray")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # "SIGTERM handler is not set ... not the main thread": expected here
            try:
                self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                              configure_logging=False, runtime_env=_runtime_env())
            finally:
                quiet.setLevel(level)
            self.started_here = True
        except InputError as exc:
            self._error = exc
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray instance"
            self._error = InputError(f"could not start or reach {where}: {str(exc).strip().splitlines()[0]}")
        finally:
            self._up.set()
        self._closed.wait()

    def ready(self) -> Any:
        """The ``ray`` module, once Ray is up.

        Raises:
            InputError: Ray could not be started or reached.
        """
        self._up.wait()
        if self._error is not None:
            raise self._error
        return self.ray

    def close(self) -> None:
        self._up.wait()
        if self.started_here:
            self.ray.shutdown()
            self.started_here = False
        self._closed.set()
        self._thread.join()

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_index_ray(scan: SourceScan, encoder: Encoder, out: str | os.PathLike[str],
                    options: BuildOptions | None = None, ray_options: RayOptions | None = None,
                    progress: ProgressFn | None = None, sparse: SparseEncoder | None = None,
                    ann_progress: ProgressFn | None = None, session: RaySession | None = None,
                    on_wait: Callable[[str], None] | None = None) -> BuildReport:
    """``build_index`` with the encode step on Ray (see the module docstring). The index is the same
    as an in-process build's; ``report.resumed_shards`` counts shards a previous run had finished.
    ``session``: Ray already being started (see ``RaySession``); without one, Ray is started here
    when there is something to encode, and shut down at the end."""
    require("ray", "ray", "itr index --engine ray")
    options = options or BuildOptions()
    ray_options = ray_options or RayOptions()
    if ray_options.shard_size < 1:
        raise InputError(f"--shard-size must be at least 1 (got {ray_options.shard_size})")
    with update_index(scan, encoder, out, options, sparse, ann_progress, on_wait) as (writer, report, live, todo):
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
            own = session is None
            session = session or RaySession(ray_options.address)
            try:
                _run_pipeline(session.ready(), pending, encoder, sparse if "sparse" in reprs else None, options, ray_options,
                              shards_dir, writer.manifest.get("sparse") if "sparse" in reprs else None,
                              "dense" in reprs, progress, done, len(todo))
            finally:
                if own:
                    session.close()
        _merge(writer, shards, shards_dir, live, options, report)
        shutil.rmtree(shards_dir, ignore_errors=True)
    return report


def _run_pipeline(ray: Any, pending: list[tuple[str, list[SourceItem]]], encoder: Encoder,
                  sparse: SparseEncoder | None, options: BuildOptions, ro: RayOptions, shards_dir: Path,
                  sparse_info: dict[str, Any] | None, keep_dense: bool, progress: ProgressFn | None,
                  done: int, total: int) -> None:
    try:
        from ray.data import ActorPoolStrategy, DataContext

        _quiet_ray_data()
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
                                                   "keep_dense": keep_dense, "shards_dir": str(shards_dir),
                                                   "sparse_info": sparse_info})
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


def _not_progress_notice(record: logging.LogRecord) -> bool:
    """Ray Data warns that its progress bars are off: ITR turned them off to draw its own."""
    return "Progress bars disabled" not in record.getMessage()


def _quiet_ray_data() -> None:
    """Ray Data's INFO lines (execution started/finished, where its logs are) would bury ITR's
    progress bar; its warnings stay. Set after importing ray.data, which configures its loggers.
    The notice is filtered on the handlers: a logger's filters do not see its children's records."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger("ray.data").handlers:
        if _not_progress_notice not in handler.filters:
            handler.addFilter(_not_progress_notice)


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


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a cluster address nothing answers on, in seconds: ``ray.init`` itself retries an
    unreachable GCS for many minutes before it gives up.

    Raises:
        InputError: the address is malformed or no TCP connection to it opens within ``timeout``.
    """
    if address in ("auto", "local"):  # Ray finds (or starts) the cluster of this machine itself
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address '{address}': expected HOST:PORT (the head's GCS, usually :6379) or "
                         "ray://HOST:PORT (Ray Client, usually :10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"could not reach the Ray cluster at {address}: {exc.strerror or exc}; is its head node "
                         "running (ray start --head) and is the port right?") from None


def _runtime_env() -> dict[str, Any] | None:
    """ITR_* settings travel to the workers; with none, no runtime environment at all, so the
    actors can start in Ray's prestarted worker processes instead of new ones."""
    env = {k: v for k, v in os.environ.items() if k.startswith("ITR_")}
    return {"env_vars": env} if env else None
