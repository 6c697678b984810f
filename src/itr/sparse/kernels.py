"""Compiled (numba) kernels of the inverted index: postings encoding and score-at-a-time search.

Written here rather than taken from a library because the two learned-sparse engines that install
offline do not fit: ``pyseismic-lsr`` is static (no appends, no deletes), keeps block summaries
(242-317 MB at 1M images of 24 terms, 5.6-7.4x this index), is no faster than these kernels for the
1000 candidates hybrid search re-scores (measured side by side in benchmarks/sparse_vs_dense.py, see
BENCHMARKS.md), and returns batches out of order; scipy's sparse products allocate a score for every
document per query and are ~20x slower at 1M (see ENGINES.md). The layout is the textbook impact-ordered index (Anh & Moffat
2006; JASS, Lin & Trotman 2015), small enough to keep correct with a conformance test.

Layout: the postings of each term are split into *impact groups* (one per quantised weight,
highest first); inside a group doc ids ascend and are stored as variable-byte gaps (7 bits per byte,
high bit = more bytes follow), typically 1-2 bytes a posting, and the weight costs nothing (it is the
group's). Score-at-a-time search processes the groups of all query terms in decreasing order of
``impact * query weight``; stopping after ``max_postings`` postings gives the anytime approximate
mode (the highest contributions are added first, so what is skipped is the least).
"""

from __future__ import annotations

import numpy as np

from .._utils import require

_numba = require("numba", "sparse", "the sparse index kernels")
njit = _numba.njit(cache=True, nogil=True)


@njit
def encode_groups(group_ptr: np.ndarray, docs: np.ndarray, out: np.ndarray, byte_ptr: np.ndarray) -> int:
    """Var-byte encode each group's ascending doc ids as gaps; ``byte_ptr[g]`` = group g's first byte."""
    pos = 0
    for g in range(len(group_ptr) - 1):
        byte_ptr[g] = pos
        prev = -1
        for i in range(group_ptr[g], group_ptr[g + 1]):
            v = docs[i] - prev
            prev = docs[i]
            while v >= 128:
                out[pos] = (v & 127) | 128
                pos += 1
                v >>= 7
            out[pos] = v
            pos += 1
    byte_ptr[len(group_ptr) - 1] = pos
    return pos


@njit
def decode_group(data: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """Doc ids of one group into ``out``; returns how many."""
    n = 0
    prev = -1
    pos = start
    while pos < end:
        v = 0
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 127) << shift
            shift += 7
            if b < 128:
                break
        prev += v
        out[n] = prev
        n += 1
    return n


SELECT_BINS = 4096


@njit
def _bin(s: float, per_bin: float) -> int:
    return min(int(s * per_bin), SELECT_BINS - 1)


@njit
def select_top(touched: np.ndarray, nt: int, acc: np.ndarray, live: np.ndarray, k: int, vals: np.ndarray,
               out_ids: np.ndarray, out_scores: np.ndarray) -> int:
    """Top-k of the ``nt`` touched documents, best first (ties to the lower id); zeroes their ``acc``.

    Why not a k-heap over the touched documents: at 1M documents a query touches ~300k of them, and
    keeping a 1000-heap cost as much as the accumulation. Here the scores are copied out once (the only
    random reads), a histogram of them gives a threshold the top k clear, and only the documents at or
    above it (about k) are sorted. ``vals`` is a scratch array of at least ``nt`` floats."""
    top = 0.0
    for i in range(nt):
        d = touched[i]
        s = acc[d]
        acc[d] = 0.0
        s = s if live[d] else -1.0
        vals[i] = s
        if s > top:
            top = s
    if top <= 0.0:
        return 0
    per_bin = SELECT_BINS / top
    hist = np.zeros(SELECT_BINS, dtype=np.int64)
    for i in range(nt):
        if vals[i] > 0.0:
            hist[_bin(vals[i], per_bin)] += 1
    cut, total = SELECT_BINS - 1, 0
    while cut > 0:
        total += hist[cut]
        if total >= k:
            break
        cut -= 1
    kept = 0
    for b in range(cut, SELECT_BINS):
        kept += hist[b]
    ids = np.empty(kept, dtype=np.int64)
    scores = np.empty(kept, dtype=np.float32)
    j = 0
    for i in range(nt):
        if vals[i] > 0.0 and _bin(vals[i], per_bin) >= cut:
            ids[j] = touched[i]
            scores[j] = vals[i]
            j += 1
    by_id = np.argsort(ids)  # then a stable sort on the score: ties keep ascending ids
    ids, scores = ids[by_id], scores[by_id]
    order = np.argsort(-scores, kind="mergesort")
    m = min(k, kept)
    for i in range(m):
        out_ids[i] = ids[order[i]]
        out_scores[i] = scores[order[i]]
    return m


@njit
def search_one(term_ptr: np.ndarray, group_impact: np.ndarray, byte_ptr: np.ndarray, data: np.ndarray,
               q_terms: np.ndarray, q_weights: np.ndarray, scale: float, live: np.ndarray,
               k: int, max_postings: int, acc: np.ndarray, touched: np.ndarray, buf: np.ndarray,
               vals: np.ndarray, out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[int, int]:
    """Top-k of one query by score-at-a-time accumulation. ``acc`` (n_docs, zeros) is left zeroed.

    Returns (number of results, postings processed). ``max_postings`` < 0 means exhaustive (exact).
    Ties go to the lower doc id; dead documents (``live[d] == 0``) are never returned. ``touched`` and
    ``vals`` are scratch arrays of n_docs entries.
    """
    n_groups = 0
    for t in q_terms:
        n_groups += term_ptr[t + 1] - term_ptr[t]
    contrib = np.empty(n_groups, dtype=np.float32)
    gids = np.empty(n_groups, dtype=np.int64)
    j = 0
    for qi in range(len(q_terms)):
        t = q_terms[qi]
        for g in range(term_ptr[t], term_ptr[t + 1]):
            contrib[j] = group_impact[g] * q_weights[qi] * scale
            gids[j] = g
            j += 1
    order = np.argsort(-contrib, kind="mergesort")
    nt = 0
    done = 0
    for oi in order:
        if max_postings >= 0 and done >= max_postings:
            break
        g = gids[oi]
        c = contrib[oi]
        n = decode_group(data, byte_ptr[g], byte_ptr[g + 1], buf)
        for i in range(n):
            # branch-free first-touch list: a data-dependent branch here mispredicts on about half of
            # the postings (30 % of the accumulation time at 1M documents)
            d = buf[i]
            a = acc[d]
            touched[nt] = d
            nt += a == 0.0
            acc[d] = a + c
        done += n
    return select_top(touched, nt, acc, live, k, vals, out_ids, out_scores), done


@njit
def term_impacts(term_ptr: np.ndarray, group_impact: np.ndarray, byte_ptr: np.ndarray, data: np.ndarray,
                 term: int, docs: np.ndarray, buf: np.ndarray, out: np.ndarray) -> None:
    """``out[i]`` = stored impact of ``term`` in ``docs[i]`` (0 when absent): for explanations."""
    for g in range(term_ptr[term], term_ptr[term + 1]):
        n = decode_group(data, byte_ptr[g], byte_ptr[g + 1], buf)
        for i in range(n):
            for j in range(len(docs)):
                if buf[i] == docs[j]:
                    out[j] = group_impact[g]


@njit
def decode_all(term_ptr: np.ndarray, group_impact: np.ndarray, byte_ptr: np.ndarray, data: np.ndarray,
               terms: np.ndarray, docs: np.ndarray, impacts: np.ndarray) -> None:
    """Every posting as (term, doc, impact) triples (arrays sized to the posting count)."""
    pos = 0
    for t in range(len(term_ptr) - 1):
        for g in range(term_ptr[t], term_ptr[t + 1]):
            n = decode_group(data, byte_ptr[g], byte_ptr[g + 1], docs[pos:])
            terms[pos : pos + n] = t
            impacts[pos : pos + n] = group_impact[g]
            pos += n
