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
frequencies. ``--extra`` (default: GCompris photos and drawings, never trained on) adds whole
evaluation sets as real test images with their names as queries: real photos among the clip-art
mixtures, and more queries than the test splits alone give (each row reports R@10 per source).

Configurations measured, each query one at a time on one thread, every real test caption timed
(the sparse ones include encoding the query's sparse vector from its dense embedding; the dense
query embedding itself is shared and left out of all):
  dense            exact inner product over N x d float32 (FAISS IndexFlatIP, 1 thread: faster
                   than 2 for single queries here); d is the shipped model's dense part (768)
  ann:KIND         FAISS IVF-PQ / HNSW through ITR's ``AnnIndex`` (the kinds ``itr index --index``
                   builds), candidates re-ranked on the float32 vectors, one point per knob value
  sparse qQ        exact score-at-a-time search (``SparseIndex.search``), Q query terms kept
  sparse-approx    anytime search, stops after BUDGET postings
  hybrid           exact sparse top C (Q query terms) re-scored with their dense vectors (read
                   from the dense matrix; memory-mapped in an ITR index)
  hybrid-approx    the same over anytime candidates
  seismic NP       Seismic (``pyseismic-lsr``, Bruch et al. SIGIR 2024) over the same sparse vectors,
                   NP postings kept per term, alone (top 10) and as hybrid's candidate generator;
                   measured only when the package is installed (it is in the dev group)
Query terms are chosen among the terms the gallery has postings for (as ``itr search`` does).
Quality: t2i R@10 on the real test captions, inside the N-image gallery, as a ratio to dense R@10
with a paired bootstrap 95 % interval over the queries (few queries hit at 1M, so the ratio is
noisy), and ``overlap10``: the share of exact dense's top 10 that the configuration returns (the
ANN convention; it needs no relevance judgements, so every query counts). Size: the bytes of the
index a configuration searches. Hybrid and the ANN rows also read the float32 vectors of their
candidates to re-score them (``rescores_float32``): those stay on disk, memory-mapped, and a query
reads its candidates' rows (1000 x 3 KB for hybrid c1000), so the size ratio is that of what must
be in memory, not of what is stored.

Usage:
    python benchmarks/sparse_vs_dense.py --n 1000000 --json bench-out/sparse_vs_dense_1m.json \
        --png docs/images/sparse_curves_1m.png
"""

from __future__ import annotations

import os

# One thread per query means one BLAS thread too: with its default pool, OpenBLAS kept the other core
# busy (the process ran at ~180 % CPU on one-query-at-a-time work) next to the kernels being timed.
# Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from itr.encoders.builtin import load_builtin
from itr.eval.runner import package_versions
from itr.search import rescore
from itr.sparse import SparseIndex, prune_rows
from itr.sparse.encoder import load_sparse_encoder
from itr.train.lexicon import dense_embeddings
from itr.train.projector import load_parts

DATA = ("emoji:en", "openclipart")


def real_items(encoder: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Dense embeddings of all real images, split into test (evaluated) and the rest, plus test captions.

    ``extra``: evaluation sets (GCompris photos and drawings) whose every image joins the gallery as a
    real test image and every caption the queries: they are never mixed into synthetic images."""
    from itr.eval import load_eval_dataset
    from itr.train.projector import feature_part

    base_img, test_img, test_txt, test_owner, source = [], [], [], [], []

    def add_test(part: Any, name: str) -> None:
        img, txt = dense_embeddings(encoder, part)
        test_owner.append(part.text_image + sum(len(x) for x in test_img))
        test_img.append(img.numpy())
        test_txt.append(txt.numpy())
        source.extend([name] * len(txt))

    for spec in DATA:
        for split in ("train", "val", "test"):
            for part in load_parts(encoder, (spec,), split, None):
                if split == "test":
                    add_test(part, spec)
                else:
                    base_img.append(dense_embeddings(encoder, part)[0].numpy())
    for spec in extra:
        add_test(feature_part(encoder, load_eval_dataset(spec), None), spec)
    return {"base": np.concatenate(base_img), "test": np.concatenate(test_img),
            "queries": np.concatenate(test_txt), "owner": np.concatenate(test_owner), "source": np.array(source)}


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


def run_config(fn: Any, n_queries: int) -> tuple[dict[str, float], np.ndarray]:
    """Each query once, timed (after 10 warm-up queries): latency percentiles and the (n, 10) tops."""
    for i in range(min(10, n_queries)):
        fn(i)
    times, tops = [], np.full((n_queries, 10), -1, dtype=np.int64)
    for i in range(n_queries):
        t0 = time.perf_counter()
        ids = fn(i)
        times.append(time.perf_counter() - t0)
        tops[i, : min(10, len(ids))] = ids[:10]
    t = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean())}, tops


def hits_at_10(top: np.ndarray, owner: np.ndarray) -> np.ndarray:
    return np.array([owner[i] in top[i, :10] for i in range(len(owner))], dtype=np.float64)


def ratio_interval(hits: np.ndarray, dense_hits: np.ndarray, seed: int,
                   rounds: int = 2000) -> tuple[float | None, float | None]:
    """Paired bootstrap 95 % interval of mean(hits) / mean(dense_hits) over the queries."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hits), (rounds, len(hits)))
    num, den = hits[idx].mean(1), dense_hits[idx].mean(1)
    r = num[den > 0] / den[den > 0]
    if not len(r):  # dense found none of these queries' images: no ratio to bound
        return None, None
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def overlap10(top: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a[a >= 0], b)) / 10 for a, b in zip(top, truth, strict=True)]))


def plot(results: list[dict[str, Any]], path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    families: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        families.setdefault(r["family"], []).append(r)
    for ax, key, label in ((axes[0], "recall10_vs_dense", "R@10 / dense R@10 (real captions)"),
                           (axes[1], "overlap10", "share of exact dense's top 10 returned")):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more families than the default 10 colours
        for family, rows in families.items():
            rows = sorted(rows, key=lambda r: r["p50_ms"])
            ax.plot([r["p50_ms"] for r in rows], [r[key] for r in rows], "o-" if len(rows) > 1 else "s",
                    label=family, markersize=4)
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        dense = next(r for r in results if r["name"] == "dense")
        ax.axvline(dense["p50_ms"] / 30, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per query, ms (1 thread); dashed: 30x faster than exact dense")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Text -> image search over {n:,} images: sparse, hybrid and dense ANN against exact dense")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def seismic_rows(n_postings: list[int], docs: Any, lex: Any, queries: np.ndarray, allowed: np.ndarray,
                 dense: np.ndarray, candidates: int, builds: dict[str, float], sizes: dict[str, int],
                 measure: Any) -> None:
    """Seismic over the same sparse vectors: alone (top 10) and as hybrid's candidate generator."""
    try:
        import seismic
    except ImportError:
        print("pyseismic-lsr is not installed: no Seismic rows (pip install pyseismic-lsr)", flush=True)
        return
    import shutil
    import tempfile

    docs = docs.tocsr()
    docs.sort_indices()
    data = seismic.SeismicDataset(dim=lex.vocab_size)
    data.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                             docs.data.astype(np.float32), docs.indptr.astype(np.int64))
    text = seismic.get_seismic_string()
    # Seismic names terms by strings: made once here, outside the timings (in Seismic's favour)
    q_rows = [lex.encode(queries[i : i + 1], "text", max_terms=lex.query_terms, allowed=allowed) for i in range(len(queries))]
    q_terms = [np.array([str(t) for t in r.indices], dtype=text) for r in q_rows]
    for npost in n_postings:
        t0 = time.perf_counter()
        sx = seismic.SeismicIndex.build_from_dataset(data, n_postings=npost, centroid_fraction=0.1,
                                                     summary_energy=0.4, num_threads=os.cpu_count() or 1)
        builds[f"seismic {npost}"] = time.perf_counter() - t0
        folder = tempfile.mkdtemp()
        try:
            sx.save(f"{folder}/index")
            size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        finally:
            shutil.rmtree(folder)
        sizes[f"seismic {npost}"] = size

        def ids_of(i: int, k: int, heap: float, sx: Any = sx) -> np.ndarray:
            # the query's sparse encoding is timed too, as in the rows above
            q = lex.encode(queries[i : i + 1], "text", max_terms=lex.query_terms, allowed=allowed)
            res = sx.search("q", q_terms[i], q.data.astype(np.float32), k, lex.query_terms, heap)
            out = np.fromiter((int(r[2]) for r in res), dtype=np.int64, count=len(res))
            return out[np.lexsort((out, -np.fromiter((r[1] for r in res), dtype=np.float64, count=len(res))))]

        for heap in (0.8, 0.95):
            measure(f"seismic {npost} hf{heap}", "sparse Seismic", lambda i, h=heap: ids_of(i, 10, h), size,
                    n_postings=npost, heap_factor=heap)

            def hybrid(i: int, h: float = heap) -> np.ndarray:
                ids = ids_of(i, candidates, h)
                return ids[rescore(dense[ids], queries[i], ids)[0][:10]]

            measure(f"hybrid seismic {npost} hf{heap} c{candidates}", "hybrid Seismic", hybrid, size,
                    rescores_float32=True, n_postings=npost, heap_factor=heap, candidates=candidates)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the gallery (real test images included)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--png", type=Path, help="write the recall/latency curves here")
    ap.add_argument("--budgets", type=int_list, default=[25_000, 50_000, 100_000, 200_000],
                    help="postings budgets of the anytime modes")
    ap.add_argument("--candidates", type=int_list, default=[100, 250, 500, 1000], help="sparse candidates of hybrid")
    ap.add_argument("--query-terms", type=int_list, default=[8, 12, 16], help="query terms kept (query pruning)")
    ap.add_argument("--ann", default="ivf-pq,hnsw", help="dense ANN kinds to build (empty: none)")
    ap.add_argument("--seismic", type=int_list, default=[5_000, 20_000],
                    help="Seismic n_postings values to build (empty: none; skipped without pyseismic-lsr)")
    ap.add_argument("--extra", default="gcompris-photos,gcompris-drawings",
                    help="evaluation sets added whole as real test images and queries (empty: none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import faiss
    import torch

    from itr.index.ann import AnnIndex, rescore_candidates

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    encoder = load_builtin("builtin")
    lex = load_sparse_encoder("builtin", encoder)
    real = real_items(encoder, tuple(x for x in args.extra.split(",") if x))
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
    queries, owner = real["queries"], real["owner"]
    nq = len(queries)
    print(f"{args.n} images, {dense.shape[1]}-d dense, {docs.nnz / args.n:.1f} terms per image, {nq} real test "
          "queries", flush=True)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dense.shape[1])
    flat.add(dense)
    builds = {"dense": time.perf_counter() - t0}
    t0 = time.perf_counter()
    index = SparseIndex.build(docs, lex.vocab_size, scale=lex.scale)
    builds["sparse"] = time.perf_counter() - t0
    sizes = {"dense": int(dense.nbytes), "sparse": index.nbytes()}
    allowed = index.terms_in_use()

    results: list[dict[str, Any]] = []
    # exact dense first: its top 10 and hits are what every configuration is compared with
    dense_lat, truth = run_config(lambda i: flat.search(queries[i : i + 1], 10)[1][0], nq)
    dense_hits = hits_at_10(truth, owner)
    sources = list(dict.fromkeys(real["source"].tolist()))

    def measure(name: str, family: str, fn: Any, size: int, *, timed: tuple[dict[str, float], np.ndarray] | None = None,
                rescores_float32: bool = False, **settings: Any) -> None:
        lat, top = timed or run_config(fn, nq)
        hits = hits_at_10(top, owner)
        by_source = {src: {"recall10": float(hits[sel].mean() * 100),
                           "recall10_vs_dense": (float(hits[sel].mean() / dense_hits[sel].mean())
                                                 if dense_hits[sel].any() else None),
                           "recall10_vs_dense_ci95": ratio_interval(hits[sel], dense_hits[sel], args.seed),
                           "dense_hits": int(dense_hits[sel].sum())}
                     for src in sources if (sel := real["source"] == src).any()}
        row = {"name": name, "family": family, **settings, **lat, "recall10": float(hits.mean() * 100),
               "recall10_vs_dense": float(hits.mean() / max(dense_hits.mean(), 1e-12)),
               "recall10_vs_dense_ci95": ratio_interval(hits, dense_hits, args.seed),
               "overlap10": overlap10(top, truth), "index_bytes": size, "rescores_float32": rescores_float32,
               "by_source": by_source}
        results.append(row)
        print(f"{name:>34}: p50 {lat['p50_ms']:7.3f} ms, p99 {lat['p99_ms']:7.3f} ms, R@10 {row['recall10']:.1f} "
              f"({row['recall10_vs_dense']:.2f} of dense, CI {row['recall10_vs_dense_ci95'][0]:.2f}-"
              f"{row['recall10_vs_dense_ci95'][1]:.2f}), overlap {row['overlap10']:.3f}; "
              + ", ".join(f"{k} {v['recall10_vs_dense']:.2f} ({v['dense_hits']} hits)" if v["dense_hits"]
                          else f"{k} - (0 hits)" for k, v in by_source.items()), flush=True)

    measure("dense", "dense exact", None, sizes["dense"], timed=(dense_lat, truth))

    def sparse_fn(terms: int, budget: int | None = None) -> Any:
        def fn(i: int) -> np.ndarray:
            q = lex.encode(queries[i : i + 1], "text", max_terms=terms, allowed=allowed)
            return index.search(q, 10, max_postings=budget)[0][0]
        return fn

    def hybrid_fn(terms: int, candidates: int, budget: int | None = None) -> Any:
        def fn(i: int) -> np.ndarray:
            q = lex.encode(queries[i : i + 1], "text", max_terms=terms, allowed=allowed)
            ids = index.search(q, candidates, max_postings=budget)[0][0]
            ids = ids[ids >= 0]
            return ids[rescore(dense[ids], queries[i], ids)[0][:10]]
        return fn

    full_terms = lex.query_terms
    for terms in args.query_terms:
        measure(f"sparse q{terms}", "sparse exact", sparse_fn(terms), sizes["sparse"], query_terms=terms)
    for budget in args.budgets:
        measure(f"sparse-approx {budget // 1000}k", "sparse anytime", sparse_fn(full_terms, budget), sizes["sparse"],
                query_terms=full_terms, budget=budget)
    for terms in args.query_terms:
        for c in args.candidates:
            measure(f"hybrid q{terms} c{c}", f"hybrid, {terms} query terms", hybrid_fn(terms, c), sizes["sparse"],
                    rescores_float32=True, query_terms=terms, candidates=c)
    c = max(args.candidates)
    for budget in args.budgets:
        measure(f"hybrid-approx {budget // 1000}k c{c}", "hybrid anytime", hybrid_fn(full_terms, c, budget),
                sizes["sparse"], rescores_float32=True, query_terms=full_terms, candidates=c, budget=budget)
    if args.seismic:
        seismic_rows(args.seismic, docs, lex, queries, allowed, dense, c, builds, sizes, measure)

    for kind in [k for k in args.ann.split(",") if k]:
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core, search on one
        t0 = time.perf_counter()
        ann = AnnIndex.build(dense, kind, seed=args.seed)
        builds[kind] = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        sizes[kind] = int(faiss.serialize_index(ann.index).nbytes)
        values = (4, 8, 16, 32, 64, 128) if ann.knob == "nprobe" else (16, 32, 64, 128, 256)
        depth = 100 if ann.info["quantised"] else 10
        for v in values:
            def ann_fn(i: int, v: int = v, ann: Any = ann, depth: int = depth) -> np.ndarray:
                ids = ann.candidates(queries[i : i + 1], depth, value=v)
                return rescore_candidates(ids, queries[i : i + 1], dense, 10)[1][0]
            measure(f"ann {kind} {ann.knob} {v}", f"dense ANN {kind}", ann_fn, sizes[kind], knob=ann.knob, value=v,
                    rerank_depth=depth, rescores_float32=True)

    d = results[0]
    for r in results:
        r["speedup_p50"] = d["p50_ms"] / r["p50_ms"]
        r["size_ratio"] = d["index_bytes"] / r["index_bytes"]
    ok = [r for r in results if r["family"].startswith(("sparse", "hybrid")) and r["recall10_vs_dense"] >= 0.95]
    best = max(ok, key=lambda r: r["speedup_p50"]) if ok else None
    ok_overlap = [r for r in results if r["family"].startswith(("sparse", "hybrid")) and r["overlap10"] >= 0.95]
    best_overlap = max(ok_overlap, key=lambda r: r["speedup_p50"]) if ok_overlap else None
    out = {
        "n": args.n, "dim": int(dense.shape[1]), "real_test_images": n_test, "queries": nq,
        "queries_by_source": {src: int((real["source"] == src).sum()) for src in sources},
        "dense_hits": int(dense_hits.sum()),
        "terms_per_image": docs.nnz / args.n, "builds_s": builds, "sizes": sizes, "configs": results,
        "fastest_at_95_recall10": best, "fastest_at_95_overlap10": best_overlap,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "versions": package_versions(),
    }
    for label, r in (("R@10 >= 95 % of dense", best), ("overlap with dense top 10 >= 0.95", best_overlap)):
        print(f"fastest sparse/hybrid with {label}: " + (
            f"{r['name']}: {r['speedup_p50']:.1f}x faster, {r['size_ratio']:.1f}x smaller, "
            f"R@10 {r['recall10_vs_dense']:.2f} (95 % CI {r['recall10_vs_dense_ci95'][0]:.2f}-"
            f"{r['recall10_vs_dense_ci95'][1]:.2f}), overlap {r['overlap10']:.3f}" if r else "none"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.png:
        plot(results, args.png, args.n)


if __name__ == "__main__":
    main()
