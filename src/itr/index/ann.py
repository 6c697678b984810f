"""Approximate dense search: FAISS indexes over a segment's vectors, chosen from a memory budget.

Why FAISS and not a hand-written ANN: it has every index family a user of this tool asks for (HNSW,
IVF-Flat, IVF-PQ/OPQ, scalar quantisers), SIMD kernels, training, selectors for deleted rows and
memory-mapped reading; ITR only chooses, tunes and stores.

An ANN index never replaces the float32 vectors of a segment: it finds candidates, and their exact
scores are then computed from the (memory-mapped) vectors. So scores are always true cosine
similarities, quantised kinds re-rank a few more candidates than asked (``rerank``), and deleting
the ANN files gives back exact search.

Index kinds (``itr index --index KIND``, ``itr eval --index KIND``):

==============  ==============================================  ==========  =====================
kind            FAISS factory (n vectors, dim d)                knob        bytes/vector
==============  ==============================================  ==========  =====================
``exact``       none: brute force over float32                  -           4d
``hnsw``        ``HNSW32``                                      efSearch    4d + ~260
``ivf-flat``    ``IVF{nlist},Flat``                             nprobe      4d + 8
``ivf-sq8``     ``IVF{nlist},SQ8``                              nprobe      d + 8
``ivf-pq``      ``IVF{nlist},PQ{m}`` (m = d/8 by default)       nprobe      m + 8
``opq-ivf-pq``  ``OPQ{m},IVF{nlist},PQ{m}``                     nprobe      m + 8
``sq8``         ``SQ8`` (flat scan of 8-bit codes)              -           d
``sq-fp16``     ``SQfp16``                                      -           2d
``auto``        the best of these that fits ``--max-memory``    tuned       <= the budget
``faiss:F``     any inner-product FAISS factory string ``F``    tuned
==============  ==============================================  ==========  =====================

``nlist`` is about 4 sqrt(n) (a power of two, at most n / 39 so every centroid has training
points), as autofaiss and the FAISS wiki recommend. After building, the knob (``nprobe`` or
``efSearch``) and the re-rank depth are *tuned* on a sample of queries against exact search: the
fastest setting that reaches the recall target, or within a latency target the most accurate one.
The measured recall and latency are recorded with the index.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import require
from ..errors import InputError, UnknownNameError

TUNE_K = 10
TUNE_QUERIES = 200
LATENCY_QUERIES = 40
TRAIN_SAMPLE = 200_000  # k-means on a sample: 256 points per centroid (FAISS's own cap) at nlist 1024
RERANK_FACTORS = (1, 2, 5, 10, 20, 50)
KNOB_VALUES = {"nprobe": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
               "efSearch": (16, 32, 64, 128, 256, 512, 1024)}
HNSW_M = 32
NAMED_KINDS = ("exact", "auto", "hnsw", "ivf-flat", "ivf-sq8", "ivf-pq", "opq-ivf-pq", "sq8", "sq-fp16")
KIND_HELP = ", ".join(NAMED_KINDS) + ", faiss:FACTORY"
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def _faiss() -> Any:
    return require("faiss", "ann", "approximate dense indexes (--index hnsw, ivf-pq, auto, ...)")


def parse_memory(text: str | int | None) -> int | None:
    """``"2G"``, ``"512M"``, ``"1.5GB"``, ``"300k"`` or a number of bytes -> bytes (powers of 1024)."""
    if text is None or isinstance(text, int):
        return text
    m = _MEMORY.match(str(text))
    if not m:
        raise InputError(f"--max-memory '{text}' is not a size; write it like 2G, 512M or 300000")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index((m.group(2) or "_").lower()))


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: the power of two nearest 4 sqrt(n), at most n / 39, at least 1."""
    target = 4 * math.sqrt(max(n, 1))
    nl = 2 ** round(math.log2(target))
    while nl > 1 and nl * 39 > n:
        nl //= 2
    return max(1, nl)


def pq_m(dim: int, budget_bytes: float) -> int | None:
    """The most PQ sub-quantisers (8-bit codes) that divide ``dim`` and fit ``budget_bytes`` per
    vector (8 bytes go to the IVF list's id); None when not even 4 fit."""
    for m in sorted((m for m in range(4, dim + 1) if dim % m == 0), reverse=True):
        if m <= dim // 2 and m + 8 <= budget_bytes:
            return m
    return None


def estimated_bytes(kind: str, dim: int) -> float:
    """Bytes per vector of the kinds ``auto`` prefers to IVF-PQ (IVF-PQ's size is chosen to fit)."""
    return {"hnsw": 4 * dim + 2 * HNSW_M * 4 + 8, "ivf-sq8": dim + 8}[kind]


def fixed_bytes(kind: str, n: int, dim: int) -> float:
    """Bytes that do not grow with n: IVF centroids, PQ codebooks (256 centroids of each sub-space)."""
    ivf = nlist_for(n) * dim * 4 if kind.startswith(("ivf", "opq")) else 0
    pq = 256 * dim * 4 if kind in ("ivf-pq", "opq-ivf-pq") else 0
    return ivf + pq + (dim * dim * 4 if kind == "opq-ivf-pq" else 0)


def choose_kind(n: int, dim: int, budget: float | None, *, exact_below: int) -> str:
    """``auto``: the kind for ``n`` vectors given a memory budget in bytes (None: no budget).

    Small segments stay exact (a scan of ``exact_below`` rows is about as fast as any index). Then,
    most accurate first: HNSW when float32 plus its graph fits, IVF-SQ8 when one byte per dimension
    fits, else IVF-PQ with as many sub-quantisers as fit. Without a budget the choice is IVF-SQ8:
    a quarter of the memory of exact, minutes to build at a million vectors (HNSW takes several
    times longer), and high recall with re-ranking.
    """
    if n < exact_below:
        return "exact"
    if budget is None:
        return "ivf-sq8"
    for kind in ("hnsw", "ivf-sq8"):
        if budget >= n * estimated_bytes(kind, dim) + fixed_bytes(kind, n, dim):
            return kind
    if pq_m(dim, per_vector_budget("ivf-pq", n, dim, budget)) is not None:
        return "ivf-pq"
    raise InputError(f"--max-memory allows {budget / n:.1f} bytes per vector; the smallest index kind "
                     f"(ivf-pq with 4 sub-quantisers) needs about {(fixed_bytes('ivf-pq', n, dim)) / n + 12:.0f}; "
                     "raise --max-memory")


def per_vector_budget(kind: str, n: int, dim: int, budget: float | None) -> float | None:
    """What a budget leaves per vector once the kind's fixed part is paid."""
    return None if budget is None else (budget - fixed_bytes(kind, n, dim)) / max(n, 1)


def factory_for(kind: str, n: int, dim: int, budget: float | None = None) -> str:
    """The FAISS factory string of a named kind (or of ``faiss:FACTORY``) for n vectors of ``dim``
    (``budget``: bytes it may take, which sets the PQ code size)."""
    if kind.startswith("faiss:"):
        factory = kind.partition(":")[2].strip()
        if not factory:
            raise UnknownNameError(f"index kind '{kind}' names no FAISS factory; valid kinds: {KIND_HELP}")
        return factory
    nl = nlist_for(n)
    per_vector = per_vector_budget(kind, n, dim, budget)
    m = pq_m(dim, per_vector) if per_vector is not None else None
    m = m or pq_m(dim, dim // 8 + 8) or 4
    table: dict[str, Callable[[], str]] = {
        "hnsw": lambda: f"HNSW{HNSW_M}", "ivf-flat": lambda: f"IVF{nl},Flat", "ivf-sq8": lambda: f"IVF{nl},SQ8",
        "ivf-pq": lambda: f"IVF{nl},PQ{m}", "opq-ivf-pq": lambda: f"OPQ{m},IVF{nl},PQ{m}",
        "sq8": lambda: "SQ8", "sq-fp16": lambda: "SQfp16",
    }
    if kind not in table:
        raise UnknownNameError(f"unknown index kind '{kind}'; valid kinds: {KIND_HELP}")
    return table[kind]()


def min_rows_for(kind: str) -> int:
    """Vectors a kind needs to train: 8-bit PQ codebooks have 256 centroids each."""
    return 256 if kind in ("ivf-pq", "opq-ivf-pq") else 1


def check_kind(kind: str) -> None:
    """Fail fast on a kind that cannot work (unknown name, or FAISS missing)."""
    if kind == "exact":
        return
    if kind not in NAMED_KINDS and not (kind.startswith("faiss:") and kind.partition(":")[2].strip()):
        raise UnknownNameError(f"unknown index kind '{kind}'; valid kinds: {KIND_HELP}")
    _faiss()


@dataclass(frozen=True, kw_only=True)
class AnnPolicy:
    """How an index builds approximate search structures (recorded in its manifest as ``ann``).

    Attributes:
        kind: a named kind, ``auto`` or ``faiss:FACTORY`` (``exact``: none).
        max_memory: bytes the ANN structures of the whole index may take (``auto`` chooses within it).
        recall: recall@10 against exact that tuning aims for.
        max_latency_ms: single-query latency tuning must stay under (then the best recall within it).
        min_rows: a segment side with fewer vectors stays exact.
        mmap: search the structures memory-mapped from disk instead of reading them into memory:
            resident memory grows only with what queries touch, but IVF search is several times
            slower (measured: BENCHMARKS.md).
    """

    kind: str = "exact"
    max_memory: int | None = None
    recall: float = 0.95
    max_latency_ms: float | None = None
    min_rows: int = 20_000
    mmap: bool = False

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if not 0 < self.recall <= 1:
            raise InputError(f"--ann-recall must be in (0, 1] (got {self.recall})")
        if self.max_memory is not None and self.max_memory <= 0:
            raise InputError("--max-memory must be positive")
        if self.min_rows < 1:
            raise InputError(f"--ann-min-rows must be at least 1 (got {self.min_rows})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AnnPolicy:
        if not data:
            return cls()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})  # fields of a newer ITR are ignored

    @property
    def enabled(self) -> bool:
        return self.kind != "exact"


@dataclass(frozen=True, kw_only=True)
class AnnQuery:
    """Per-query overrides of the tuned settings (``exact``: ignore ANN structures)."""

    nprobe: int | None = None
    ef_search: int | None = None
    rerank: int | None = None
    exact: bool = False


class AnnIndex:
    """A FAISS index over the rows of one segment side, plus its tuned settings (``info``)."""

    def __init__(self, index: Any, info: dict[str, Any]) -> None:
        self.index = index
        self.info = info
        self.knob: str | None = info.get("knob")

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str, *, budget: float | None = None, seed: int = 0) -> AnnIndex:
        """Train and fill the index of ``kind`` over ``vectors`` (not yet tuned)."""
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = x.shape
        factory = factory_for(kind, n, dim, budget)
        start = time.perf_counter()
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ):
                ivf = faiss.downcast_index(ivf)
                # FAISS re-orders PQ codes for polysemous filtering by default: 90 % of the training
                # time (measured), for a search mode ITR never uses.
                ivf.do_polysemous_training = False
            if not index.is_trained:
                rng = np.random.default_rng(seed)
                sample = x if n <= TRAIN_SAMPLE else x[np.sort(rng.choice(n, TRAIN_SAMPLE, replace=False))]
                index.train(sample)
            index.add(x)
        except RuntimeError as exc:  # FAISS reports bad factory strings and too-small training sets so
            text = str(exc).strip()
            first = text.splitlines()[-1] if text else type(exc).__name__
            raise InputError(f"FAISS index '{factory}' could not be built over {n} vectors of dim {dim}: {first}") from None
        ivf = faiss.try_extract_index_ivf(index)
        knob = "nprobe" if ivf is not None else "efSearch" if "HNSW" in type(_inner(index)).__name__ else None
        info = {"kind": kind, "factory": factory, "rows": n, "dim": dim, "knob": knob, "value": None,
                "rerank": 1, "quantised": _quantised(index), "build_seconds": round(time.perf_counter() - start, 2)}
        if knob == "nprobe":
            info["nlist"] = int(ivf.nlist)
        return cls(index, info)

    def tune(self, vectors: np.ndarray, queries: np.ndarray, *, recall: float, max_latency_ms: float | None = None,
             k: int = TUNE_K) -> None:
        """Set the knob and re-rank depth: the fastest setting reaching ``recall`` against exact
        top-``k`` on ``queries``; with ``max_latency_ms``, the most accurate one within it."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(vectors))
        truth = np.argpartition(-(q @ np.asarray(vectors, dtype=np.float32).T), k - 1, axis=1)[:, :k]
        values: tuple[int | None, ...] = (None,)
        if self.knob is not None:
            limit = self.info.get("nlist", 10**9)
            values = tuple(v for v in KNOB_VALUES[self.knob] if v <= limit) or (1,)
        factors = RERANK_FACTORS if self.info["quantised"] else (1,)
        tried: list[tuple[float, float, int | None, int]] = []  # (recall, p50 ms, value, factor)
        for value in values:
            depth = min(len(vectors), k * factors[-1])
            ids = self.candidates(q, depth, value=value)
            for f in factors:
                r = _overlap(rescore_candidates(ids[:, : k * f], q, vectors, k)[1], truth)
                if tried and r <= max(t[0] for t in tried) and f > 1:
                    continue  # deeper re-ranking that gains nothing is never the choice
                tried.append((r, self._latency(q, vectors, k, value, f), value, f))
                if r >= recall:
                    break
            if max(t[0] for t in tried) >= recall and (max_latency_ms is None or
                                                      min(t[1] for t in tried if t[0] >= recall) <= max_latency_ms):
                break  # a larger knob value is only slower
        ok = [t for t in tried if t[0] >= recall and (max_latency_ms is None or t[1] <= max_latency_ms)]
        if ok:
            best = min(ok, key=lambda t: t[1])
        else:
            within = [t for t in tried if max_latency_ms is None or t[1] <= max_latency_ms] or tried
            best = max(within, key=lambda t: (t[0], -t[1]))
        self.info.update(recall=round(best[0], 4), p50_ms=round(best[1], 3), value=best[2], rerank=best[3],
                         tuned_on=len(q))

    def _latency(self, q: np.ndarray, vectors: np.ndarray, k: int, value: int | None, factor: int) -> float:
        times = []
        for row in q[:LATENCY_QUERIES]:
            t0 = time.perf_counter()
            ids = self.candidates(row[None], k * factor, value=value)
            rescore_candidates(ids, row[None], vectors, k)
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e3)

    def candidates(self, queries: np.ndarray, depth: int, *, live: np.ndarray | None = None,
                   value: int | None = None) -> np.ndarray:
        """(n, depth) candidate rows per query (-1 pads), from the index alone. ``live``: rows that
        may be returned, as ``live_bitmap`` packs them (deleted rows are skipped inside the search)."""
        faiss = _faiss()
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        value = self.info.get("value") if value is None else value
        sel = faiss.IDSelectorBitmap(self.info["rows"], faiss.swig_ptr(live)) if live is not None else None
        if self.knob == "nprobe":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=int(value or 1))
        elif self.knob == "efSearch":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(int(value or 16), depth))
        else:
            params = faiss.SearchParameters(sel=sel)
        if isinstance(self.index, faiss.IndexPreTransform):
            params = faiss.SearchParametersPreTransform(index_params=params, sel=sel)
        _, ids = self.index.search(q, min(depth, self.info["rows"]), params=params)
        return np.asarray(ids, dtype=np.int64)

    def depth(self, k: int, query: AnnQuery | None = None) -> int:
        factor = query.rerank if query is not None and query.rerank else self.info.get("rerank", 1)
        return max(k, k * int(factor))

    def knob_value(self, query: AnnQuery | None) -> int | None:
        if query is None:
            return None
        return query.nprobe if self.knob == "nprobe" else query.ef_search if self.knob == "efSearch" else None

    def save(self, path: Path) -> int:
        """Write the index to ``path`` (write-then-rename); returns its size in bytes."""
        faiss = _faiss()
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(self.index, str(tmp))
        tmp.replace(path)
        return path.stat().st_size

    @classmethod
    def open(cls, path: Path, info: dict[str, Any], *, mmap: bool = False) -> AnnIndex:
        """Read a saved index into memory, or memory-mapped (``mmap``: IVF lists and flat codes stay
        on disk and are paged in on use)."""
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise InputError(f"{path}: unreadable ANN index ({str(exc).strip().splitlines()[-1]}); "
                             "rebuild it with itr index ... --index KIND") from None
        if index.ntotal != info["rows"]:
            raise InputError(f"{path}: ANN index has {index.ntotal} rows, its segment {info['rows']}; "
                             "rebuild it with itr index ... --index KIND")
        return cls(index, dict(info))


def _inner(index: Any) -> Any:
    faiss = _faiss()
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return faiss.downcast_index(index)


def _quantised(index: Any) -> bool:
    """Whether the index scores from compressed codes (then candidates are re-ranked exactly)."""
    inner = _inner(index)
    name = type(inner).__name__
    if "HNSW" in name:
        return "Flat" not in type(_faiss().downcast_index(inner.storage)).__name__
    return not name.endswith("Flat")


def live_bitmap(live: np.ndarray) -> np.ndarray | None:
    """A bool live-row mask packed for FAISS's ``IDSelectorBitmap``; None when every row is live."""
    return None if live.all() else np.packbits(live, bitorder="little")


def rescore_candidates(ids: np.ndarray, queries: np.ndarray, vectors: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the top ``k`` of each row of candidate ``ids`` (-1 pads) by exact inner
    product with its query, read from ``vectors`` (memory-mapped: only these rows are touched).
    Equal scores go to the lower row, as in exact search; -inf / -1 pad missing results."""
    scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
    rows = np.full((len(ids), k), -1, dtype=np.int64)
    for i, cand in enumerate(ids):  # per query: each has its own candidate rows
        c = np.unique(cand[cand >= 0])  # sorted, for the tie order and a sequential read
        if len(c) == 0:
            continue
        s = np.asarray(vectors[c], dtype=np.float32) @ queries[i]
        order = np.lexsort((c, -s))[:k]
        scores[i, : len(order)] = s[order]
        rows[i, : len(order)] = c[order]
    return scores, rows


def _overlap(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k found (recall@k against exact)."""
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / k for f, t in zip(found, truth, strict=True)]))


def build_tuned(vectors: np.ndarray, kind: str, queries: np.ndarray | None, policy: AnnPolicy,
                budget: float | None = None, seed: int = 0) -> AnnIndex:
    """Build the index of ``kind`` over ``vectors`` (within ``budget`` bytes) and tune it on
    ``queries`` (default: a sample of the vectors themselves)."""
    index = AnnIndex.build(vectors, kind, budget=budget, seed=seed)
    rng = np.random.default_rng(seed)
    if queries is None or len(queries) < 20:
        queries = np.asarray(vectors[np.sort(rng.choice(len(vectors), min(len(vectors), TUNE_QUERIES), replace=False))])
    elif len(queries) > TUNE_QUERIES:
        queries = np.asarray(queries[np.sort(rng.choice(len(queries), TUNE_QUERIES, replace=False))])
    index.tune(vectors, queries, recall=policy.recall, max_latency_ms=policy.max_latency_ms)
    return index
