"""The serving-back-end candidates measured on ITR's own data (issue 7, part 3).

One real ITR index (default: the demo index, built-in model, ``--repr both``: dense 384-d vectors
and learned-sparse lexicon vectors of 1543 emoji images) is loaded into each engine that can run
on this machine, and each answers the same queries: the dense and sparse vectors of ``--queries``
real captions (text -> image), one query at a time.

- ``itr-folder``: the index folder itself (exact dense, ITR's inverted index, hybrid rescore).
- ``milvus-lite-file``: ``itr export`` into a Milvus Lite ``.db`` file (in process), searched
  through ``MilvusIndex``: the code path ITR ships.
- ``milvus-lite-server``: the same, but ``milvus-lite server`` in another process, over gRPC: the
  client path a Milvus cluster takes.
- ``qdrant-edge``: qdrant-edge-py (in-process engine; not an ITR dependency: measured when
  installed), same vectors, dense + sparse + RRF prefetch query.

Reported per engine: load time, p50/p99 latency per mode, and recall@10 against the folder's exact
results (dense and sparse). Hybrid is RRF (the one fusion every engine has natively).

Usage:
    python benchmarks/vector_db.py --index .demo/index --json bench-out/vector_db.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from itr.eval.runner import package_versions
from itr.search import Fusion, Mode, SearchOptions, open_searcher
from itr.types import Target


def _latency(fn: Callable[[int], list[str]], n: int) -> tuple[dict[str, float], list[list[str]]]:
    fn(0)  # warm-up
    times, results = [], []
    for i in range(n):
        t = time.perf_counter()
        results.append(fn(i))
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}, results


def _recall(got: list[list[str]], want: list[list[str]]) -> float:
    return round(float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want, strict=True)])), 4)


def _searcher_runs(searcher: Any, dense: np.ndarray, sparse: Any) -> dict[str, Callable[[int], list[str]]]:
    idx = searcher.index
    rrf = SearchOptions(k=10, mode=Mode.HYBRID, fusion=Fusion.RRF, candidates=100)

    def d(i: int) -> list[str]:
        return [idx.hit(c, Target.IMAGES).id for c in idx.dense_candidates(dense[i : i + 1], k=10, target=Target.IMAGES)[0]]

    def s(i: int) -> list[str]:
        return [idx.hit(c, Target.IMAGES).id for c in idx.sparse_candidates(sparse[i], k=10, target=Target.IMAGES)[0]]

    def h(i: int) -> list[str]:
        return [idx.hit(c, Target.IMAGES).id for c in searcher._fuse(dense[i : i + 1], sparse[i], rrf)]

    return {"dense": d, "sparse": s, "hybrid_rrf": h}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_milvus_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite.cmdline", "server", "--data-dir", str(data),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("milvus-lite server did not start")


def _qdrant_edge(folder: Any, work: Path, dense: np.ndarray, sparse: Any) -> tuple[float, dict[str, Callable]]:
    import qdrant_edge as q

    idx = folder.index
    cfg = q.EdgeConfig(vectors={"dense": q.EdgeVectorParams(size=idx.dim, distance=q.Distance.Dot)},
                       sparse_vectors={"sparse": q.EdgeSparseVectorParams()})
    (work / "qdrant").mkdir()
    t = time.perf_counter()
    shard = q.EdgeShard.create(str(work / "qdrant"), cfg)
    ids: list[str] = []
    for seg in idx.segments:
        m = seg.image_sparse.dequantised()
        points = []
        for r, it in enumerate(seg.image_items):
            if not seg.image_live[r]:
                continue
            lo, hi = m.indptr[r], m.indptr[r + 1]
            vec: dict[str, Any] = {"dense": np.asarray(seg.images[r], dtype=np.float32).tolist()}
            if hi > lo:
                vec["sparse"] = q.SparseVector(indices=m.indices[lo:hi].tolist(), values=m.data[lo:hi].tolist())
            points.append(q.Point(id=len(ids), vector=vec, payload={"id": it["id"]}))
            ids.append(it["id"])
        for start in range(0, len(points), 512):
            shard.update(q.UpdateOperation.upsert_points(points[start:start + 512]))
    shard.flush()
    load = time.perf_counter() - t

    def sv(i: int) -> Any:
        row = sparse[i]
        return q.SparseVector(indices=row.indices.tolist(), values=row.data.tolist())

    def run(query: Any) -> list[str]:
        return [ids[p.id] for p in shard.query(query)]

    return load, {
        "dense": lambda i: run(q.QueryRequest(query=q.Query.Nearest(dense[i].tolist(), using="dense"), limit=10)),
        "sparse": lambda i: run(q.QueryRequest(query=q.Query.Nearest(sv(i), using="sparse"), limit=10)),
        "hybrid_rrf": lambda i: run(q.QueryRequest(prefetches=[
            q.Prefetch(query=q.Query.Nearest(dense[i].tolist(), using="dense"), limit=100),
            q.Prefetch(query=q.Query.Nearest(sv(i), using="sparse"), limit=100)], query=q.Fusion.Rrf(60), limit=10)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=Path(".demo/index"))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from itr.backends.milvus_export import export_to_milvus

    folder = open_searcher(args.index)
    if folder.sparse is None:
        raise SystemExit(f"{args.index} has no sparse vectors: build it with itr index ... --repr both")
    rng = np.random.default_rng(0)
    texts = [t for seg in folder.index.segments for t, live in zip(seg.text_rows, seg.text_live, strict=True) if live]
    picked = [texts[i]["text"] for i in rng.choice(len(texts), size=min(args.queries, len(texts)), replace=False)]
    dense = folder.encoder.encode_texts(picked)
    q = folder.sparse.encode(dense, "text", max_terms=folder.sparse.query_terms).tocsr()
    sparse = [q[i] for i in range(q.shape[0])]
    n = len(picked)
    work = Path(tempfile.mkdtemp(prefix="itr-vdb-bench-"))
    results: dict[str, Any] = {}
    truth: dict[str, list[list[str]]] = {}

    def measure(name: str, load_s: float, runs: dict[str, Callable[[int], list[str]]]) -> None:
        row: dict[str, Any] = {"load_s": round(load_s, 2)}
        for mode, fn in runs.items():
            lat, got = _latency(fn, n)
            row[mode] = lat
            if name == "itr-folder":
                truth[mode] = got
            elif mode in ("dense", "sparse"):
                row[mode]["recall10_vs_itr_exact"] = _recall(got, truth[mode])
        results[name] = row
        print(name, json.dumps(row), flush=True)

    try:
        measure("itr-folder", 0.0, _searcher_runs(folder, dense, sparse))
        t = time.perf_counter()
        to = f"milvus:{work / 'bench.db'}"
        export_to_milvus(args.index, to, dense_index="FLAT")
        load = time.perf_counter() - t
        measure("milvus-lite-file", load, _searcher_runs(open_searcher(to), dense, sparse))
        port = _free_port()
        server = _start_milvus_server(work / "milvus-server", port)
        try:
            t = time.perf_counter()
            to = f"milvus:http://127.0.0.1:{port}"
            export_to_milvus(args.index, to, dense_index="FLAT")
            load = time.perf_counter() - t
            measure("milvus-lite-server", load, _searcher_runs(open_searcher(to), dense, sparse))
        finally:
            server.kill()
        try:
            load, runs = _qdrant_edge(folder, work, dense, sparse)
            measure("qdrant-edge", load, runs)
        except ImportError:
            print("qdrant-edge-py not installed: skipped", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"index": str(args.index), "items": folder.index.counts, "queries": n, "machine": platform.machine(),
              "cpus": __import__("os").cpu_count(), "versions": package_versions(), "engines": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
