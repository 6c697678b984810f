"""Learned-sparse vs exact dense retrieval at scale: latency, throughput, size, build time, recall.

One run builds, over the same N images, an exact dense index (float32 inner product, FAISS
IndexFlatIP: the CLIP-style baseline) and ITR's sparse inverted index (the shipped lexicon head's
vectors, 24 terms per image), then measures text->image search with real captions as queries.

Items. Real: the built-in model's embeddings of every image of the offline sets (emoji, CLDR en;
openclipart), train/val/test. The *test* images are the evaluation set and are always in the
gallery, with their real captions as queries. Scaled up to N: each synthetic image mixes two real
*non-test* images a, b with lam ~ U(0.5, 1): dense = normalise(lam*a + (1-lam)*b + noise), and its
sparse vector = lam*s_a + (1-lam)*s_b cut to the 24 largest weights. The mixtures are what the real
distribution looks like near real items (hard distractors), their sparse rows keep the real
number of terms (24) and draw their terms from real rows, so postings lengths follow the real term
frequencies.

Modes measured (single query, one thread; the sparse ones include encoding the query's sparse
vector from its dense embedding, the dense query embedding itself is shared and excluded):
  dense         exact inner product over N x 384 float32 (FAISS, 1 thread: faster than 2 here)
  sparse        exact score-at-a-time over the inverted index
  sparse-approx anytime search, stops after --budget postings
  hybrid        exact sparse top --candidates re-scored with their dense vectors (read from the
                dense matrix; memory-mapped in an ITR index)
  hybrid-approx the same over sparse-approx candidates
Recall: t2i R@10 of each mode on the real test captions, inside the N-image gallery, divided by
dense R@10 (``recall10_vs_dense``). Headline keys use the hybrid mode for recall and speed (the
target allows hybrid with the dense vectors of the sparse candidates only) and the sparse index for
size.

Usage:
    python benchmarks/sparse_vs_dense.py --n 1000000 --json bench-out/sparse_vs_dense_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from itr.encoders.builtin import load_builtin
from itr.eval.runner import package_versions
from itr.search import rescore
from itr.sparse import SparseIndex, prune_rows
from itr.sparse.encoder import load_sparse_encoder
from itr.train.lexicon import dense_embeddings
from itr.train.projector import load_parts

DATA = ("emoji:en", "openclipart")


def real_items(encoder: Any) -> dict[str, Any]:
    """Dense embeddings of all real images, split into test (evaluated) and the rest, plus test captions."""
    base_img, test_img, test_txt, test_owner = [], [], [], []
    for spec in DATA:
        for split in ("train", "val", "test"):
            for part in load_parts(encoder, (spec,), split, None):
                img, txt = dense_embeddings(encoder, part)
                if split == "test":
                    test_owner.append(part.text_image + sum(len(x) for x in test_img))
                    test_img.append(img.numpy())
                    test_txt.append(txt.numpy())
                else:
                    base_img.append(img.numpy())
    return {"base": np.concatenate(base_img), "test": np.concatenate(test_img),
            "queries": np.concatenate(test_txt), "owner": np.concatenate(test_owner)}


def synthesize(n: int, base: np.ndarray, base_sparse: Any, seed: int) -> tuple[np.ndarray, Any]:
    """``n`` mixtures of two real items (dense and sparse from the same mixture; see the docstring)."""
    from scipy import sparse as sp

    rng = np.random.default_rng(seed)
    dense = np.empty((n, base.shape[1]), dtype=np.float32)
    parts = []
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        lam = rng.uniform(0.5, 1.0, m).astype(np.float32)
        d = lam[:, None] * base[a] + (1 - lam[:, None]) * base[b]
        d += rng.normal(0, 0.02, d.shape).astype(np.float32)
        dense[start : start + m] = d / np.linalg.norm(d, axis=1, keepdims=True)
        s = sp.diags(lam) @ base_sparse[a] + sp.diags(1 - lam) @ base_sparse[b]
        parts.append(prune_rows(s.tocsr(), 24))
    return dense, sp.vstack(parts, format="csr")


def timed(fn: Any, queries: list[Any]) -> dict[str, float]:
    for q in queries[:10]:
        fn(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean())}


def recall_at_10(top: np.ndarray, owner: np.ndarray, offset: int) -> float:
    return float(np.mean([(owner[i] + offset) in top[i, :10] for i in range(len(owner))]) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the gallery (real test images included)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--budget", type=int, default=100_000, help="postings budget of the approximate sparse mode")
    ap.add_argument("--candidates", type=int, default=1000, help="sparse candidates re-scored by hybrid")
    ap.add_argument("--queries", type=int, default=300, help="queries timed one by one")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import faiss
    import torch

    torch.set_num_threads(1)
    encoder = load_builtin("builtin")
    lex = load_sparse_encoder("builtin", encoder)
    real = real_items(encoder)
    n_test = len(real["test"])
    if args.n < n_test:
        raise SystemExit(f"--n must be at least the {n_test} real test images")
    base_sparse = lex.encode(real["base"], "image", max_terms=lex.doc_terms)
    dense_syn, sparse_syn = synthesize(args.n - n_test, real["base"], base_sparse, args.seed)
    from scipy import sparse as sp

    # real test images first (ids 0..n_test-1), then the synthetic ones
    dense = np.concatenate([real["test"], dense_syn])
    del dense_syn
    docs = sp.vstack([lex.encode(real["test"], "image", max_terms=lex.doc_terms), sparse_syn], format="csr")
    del sparse_syn
    print(f"{args.n} images, {docs.nnz / args.n:.1f} terms per image, {len(real['queries'])} real test queries", flush=True)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dense.shape[1])
    flat.add(dense)
    dense_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = SparseIndex.build(docs, lex.vocab_size, scale=lex.scale)
    sparse_build = time.perf_counter() - t0
    dense_bytes = int(dense.nbytes)
    sparse_bytes = index.nbytes()

    queries = real["queries"]
    q_sparse = lex.encode(queries, "text", max_terms=lex.query_terms)
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(queries), size=min(args.queries, len(queries)), replace=False)

    def dense_one(i: int) -> np.ndarray:
        return flat.search(queries[i : i + 1], 10)[1][0]

    def sparse_one(i: int, budget: int | None = None) -> np.ndarray:
        q = lex.encode(queries[i : i + 1], "text", max_terms=lex.query_terms)
        return index.search(q, 10, max_postings=budget)[0][0]

    def hybrid_one(i: int, budget: int | None = None) -> np.ndarray:
        q = lex.encode(queries[i : i + 1], "text", max_terms=lex.query_terms)
        ids = index.search(q, args.candidates, max_postings=budget)[0][0]
        ids = ids[ids >= 0]
        return ids[rescore(dense[ids], queries[i], ids)[0][:10]]

    faiss.omp_set_num_threads(1)
    modes = {"dense": dense_one, "sparse": sparse_one, "sparse-approx": lambda i: sparse_one(i, args.budget),
             "hybrid": hybrid_one, "hybrid-approx": lambda i: hybrid_one(i, args.budget)}
    results: dict[str, Any] = {}
    for name, fn in modes.items():
        lat = timed(fn, list(picks))
        top = np.stack([np.pad(fn(i), (0, 10))[:10] for i in range(len(queries))])
        results[name] = {**lat, "recall10": recall_at_10(top, real["owner"], 0)}
        print(f"{name:>14}: p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms, "
              f"R@10 {results[name]['recall10']:.1f}", flush=True)
    # batch throughput: all real queries at once, 2 threads for dense (its best), the sparse loop as is
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    flat.search(queries, 10)
    results["dense"]["batch_qps"] = len(queries) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    index.search(q_sparse, 10)
    results["sparse"]["batch_qps"] = len(queries) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    index.search(q_sparse, 10, max_postings=args.budget)
    results["sparse-approx"]["batch_qps"] = len(queries) / (time.perf_counter() - t0)

    d = results["dense"]
    out = {
        "n": args.n, "real_test_images": n_test, "queries": len(queries), "timed_queries": len(picks),
        "terms_per_image": docs.nnz / args.n, "terms_per_query": q_sparse.nnz / len(queries),
        "budget": args.budget, "candidates": args.candidates,
        "modes": results,
        "dense_bytes": dense_bytes, "sparse_bytes": sparse_bytes,
        "dense_build_s": dense_build, "sparse_build_s": sparse_build,
        "speedup_p50": d["p50_ms"] / results["hybrid"]["p50_ms"],
        "speedup_p50_sparse_exact": d["p50_ms"] / results["sparse"]["p50_ms"],
        "speedup_p50_sparse_approx": d["p50_ms"] / results["sparse-approx"]["p50_ms"],
        "size_ratio": dense_bytes / sparse_bytes,
        "recall10_vs_dense": results["hybrid"]["recall10"] / d["recall10"],
        "recall10_vs_dense_sparse_exact": results["sparse"]["recall10"] / d["recall10"],
        "recall10_vs_dense_sparse_approx": results["sparse-approx"]["recall10"] / d["recall10"],
        "speedup_p50_hybrid_approx": d["p50_ms"] / results["hybrid-approx"]["p50_ms"],
        "recall10_vs_dense_hybrid_approx": results["hybrid-approx"]["recall10"] / d["recall10"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "versions": package_versions(),
    }
    print(json.dumps({k: v for k, v in out.items() if k not in ("modes", "machine", "versions")}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
