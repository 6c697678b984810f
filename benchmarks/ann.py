"""Approximate dense index kinds at scale: build time, bytes/vector, latency, batch QPS, recall vs exact.

Every kind is built the way ``itr index --index KIND`` builds it (``IndexWriter.build_ann``: FAISS
index, tuned for recall@10 >= 0.95 against exact on the index's captions) inside a real ITR index
folder, and searched through ``DenseIndex`` (candidates from FAISS, exact re-scoring from the
memory-mapped float32 vectors), so the numbers include everything a search pays.

Vectors (512-d, "real distribution"). Real: the built-in model's embeddings (384-d) of every image
and caption of the offline sets (emoji, CLDR en; openclipart). Scaled up to N as in
``sparse_vs_dense.py``: each vector mixes two real images a, b with lam ~ U(0.5, 1) plus a little
noise, which is what the real distribution looks like near real items (hard near-duplicates).
The 384-d vectors are mapped into 512-d by a fixed random orthonormal map (an isometry: every
inner product, so every ranking, is unchanged) plus isotropic noise in all 512 dimensions.
Queries: the real test captions; half are the index's captions (they tune the image side, as any
ITR index's captions do), the other half are the held-out queries measured here.

Usage:
    python benchmarks/ann.py --n 1000000 --json bench-out/ann_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sparse_vs_dense import real_items

from itr.encoders.builtin import load_builtin
from itr.eval.runner import package_versions
from itr.index import DenseIndex, IndexWriter
from itr.index.ann import AnnPolicy, AnnQuery
from itr.types import Target

DIM = 512
KINDS = ("sq-fp16", "sq8", "ivf-flat", "ivf-sq8", "ivf-pq", "opq-ivf-pq", "hnsw", "auto")


def vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N x 512 gallery, tuning captions, held-out query captions), unit length, float32."""
    real = real_items(load_builtin("builtin"))
    base, test, queries = real["base"], real["test"], real["queries"]
    rng = np.random.default_rng(seed)
    lift = np.linalg.qr(rng.normal(size=(DIM, base.shape[1])))[0].astype(np.float32)
    noise = 0.02 * np.sqrt(base.shape[1] / DIM)
    x = np.empty((n, DIM), dtype=np.float32)
    x[: len(test)] = test @ lift.T
    for start in range(len(test), n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        lam = rng.uniform(0.5, 1.0, m).astype(np.float32)[:, None]
        x[start : start + m] = (lam * base[a] + (1 - lam) * base[b]) @ lift.T
        x[start : start + m] += rng.normal(0, noise, (m, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = queries @ lift.T
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    order = rng.permutation(len(q))
    half = len(q) // 2
    return x, np.ascontiguousarray(q[order[:half]]), np.ascontiguousarray(q[order[half:]])


def write_index(root: Path, x: np.ndarray, captions: np.ndarray) -> None:
    n = len(x)
    items = [{"id": f"i{r}", "image": None, "row": r, "signature": "", "meta": {}, "captions": int(r < len(captions))}
             for r in range(n)]
    texts = [{"id": f"i{r}#0", "item": f"i{r}", "text": ""} for r in range(len(captions))]
    with IndexWriter(root, encoder={"spec": "bench", "fingerprint": "bench", "dim": DIM}) as w:
        w.add_segment(items, x, texts, captions.astype(np.float32))
        w.commit()


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rows(idx: DenseIndex, q: np.ndarray, ann: AnnQuery | None) -> list[list[int]]:
    return [[r for _, _, r in row] for row in idx.dense_candidates(q, k=10, target=Target.IMAGES, ann=ann)]


def measure(idx: DenseIndex, q: np.ndarray, truth: list[list[int]], ann: AnnQuery | None) -> dict[str, float]:
    import faiss

    faiss.omp_set_num_threads(1)  # single queries: one thread is faster in FAISS (see ENGINES.md)
    for row in q[:10]:
        rows(idx, row[None], ann)
    times = []
    for row in q:
        t0 = time.perf_counter()
        rows(idx, row[None], ann)
        times.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    found = rows(idx, q, ann)
    batch = time.perf_counter() - t0
    t = np.array(times) * 1e3
    recall = float(np.mean([len(set(f) & set(w)) / 10 for f, w in zip(found, truth, strict=True)]))
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
            "batch_qps": len(q) / batch, "recall10_vs_exact": recall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the gallery")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated index kinds")
    ap.add_argument("--max-memory-fraction", type=float, default=1 / 8,
                    help="budget of the auto kind, as a fraction of the float32 vectors' size")
    ap.add_argument("--recall", type=float, default=0.95, help="recall@10 the kinds are tuned for")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, help="folder for the index (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    x, tune_q, q = vectors(args.n, args.seed)
    print(f"{args.n} x {DIM} vectors, {len(tune_q)} tuning captions, {len(q)} held-out queries "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="itr-ann-"))
    root = work / "index"
    shutil.rmtree(root, ignore_errors=True)
    write_index(root, x, tune_q)
    fp32 = args.n * DIM * 4
    del x
    idx = DenseIndex.open(root)
    truth = rows(idx, q, AnnQuery(exact=True))
    results: list[dict[str, Any]] = [{"kind": "exact", "factory": "numpy scan of float32", "build_s": 0.0,
                                      "bytes_per_vector": DIM * 4.0, **measure(idx, q, truth, AnnQuery(exact=True))}]
    print(json.dumps(results[-1]), flush=True)
    enc = {"spec": "bench", "fingerprint": "bench", "dim": DIM}
    for kind in args.kinds.split(","):
        budget = int(fp32 * args.max_memory_fraction) if kind == "auto" else None
        policy = AnnPolicy(kind=kind, max_memory=budget, recall=args.recall, min_rows=min(10_000, args.n))
        rss0 = rss_mb()
        t1 = time.perf_counter()
        with IndexWriter(root, encoder=enc) as w:
            w.build_ann(policy)
        build = time.perf_counter() - t1
        info = DenseIndex.open(root).manifest["segments"][0]["ann"]["images"]
        rss1 = rss_mb()
        idx = DenseIndex.open(root)  # memory-mapped: opening costs little resident memory
        opened = rss_mb() - rss1
        r = {"kind": kind, "factory": info["factory"], "build_s": build, "bytes_per_vector": info["bytes"] / args.n,
             "tuned": {key: info.get(key) for key in ("knob", "value", "rerank", "recall", "p50_ms")},
             "rss_open_mb": opened, "rss_build_mb": rss1 - rss0, **measure(idx, q, truth, None)}
        del idx
        rss2 = rss_mb()
        mapped = DenseIndex.open(root, ann_mmap=True)
        r["rss_open_mb_mmap"] = rss_mb() - rss2
        r["mmap"] = {key: v for key, v in measure(mapped, q, truth, None).items() if key in ("p50_ms", "p99_ms")}
        del mapped
        r["speedup_p50"] = results[0]["p50_ms"] / r["p50_ms"]
        r["memory_fraction"] = r["bytes_per_vector"] / (DIM * 4)
        r["meets_goal"] = bool(r["recall10_vs_exact"] >= 0.95 and r["speedup_p50"] >= 50 and r["memory_fraction"] <= 1 / 8)
        results.append(r)
        print(json.dumps(r), flush=True)
    out = {"n": args.n, "dim": DIM, "queries": len(q), "results": results, "versions": package_versions(),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
