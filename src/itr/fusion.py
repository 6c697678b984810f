"""Search modes and the fusion of dense and sparse candidate lists: shared by the index folder's
searcher (``itr.search``) and the back ends (``itr.backends``), below both, so neither imports the other."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from .errors import InputError
from .index.store import Candidate

RRF_K = 60


class Mode(StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


class Fusion(StrEnum):
    RESCORE = "rescore"
    RRF = "rrf"
    WEIGHTED = "weighted"


def rescore(vectors: np.ndarray, query: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid ``rescore``: sparse search found the candidates, their dense vectors rank them.

    Returns the candidates' order (best first, equal scores by lower ``key``) and their scores in it.
    """
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32)
    order = np.lexsort((keys, -scores))
    return order, scores[order]


def fuse(dense: list[Candidate], sparse: list[Candidate], fusion: Fusion, *, alpha: float = 0.5) -> list[Candidate]:
    """Merge two ranked candidate lists (score, segment, row); the fused score replaces the score.

    ``rrf``: sum of 1 / (60 + rank) over the lists a candidate is in (Cormack et al. 2009; scale-free).
    ``weighted``: alpha * dense + (1 - alpha) * sparse after min-max normalising each list (a
    candidate missing from a list gets 0 there).
    """
    fused: dict[tuple[int, int], float] = {}
    if fusion is Fusion.RRF:
        for lst in (dense, sparse):
            for rank, (_, si, row) in enumerate(lst, 1):
                fused[(si, row)] = fused.get((si, row), 0.0) + 1.0 / (RRF_K + rank)
    elif fusion is Fusion.WEIGHTED:
        for lst, weight in ((dense, alpha), (sparse, 1.0 - alpha)):
            if not lst:
                continue
            hi, lo = lst[0][0], lst[-1][0]
            for s, si, row in lst:
                norm = (s - lo) / (hi - lo) if hi > lo else 1.0
                fused[(si, row)] = fused.get((si, row), 0.0) + weight * norm
    else:
        raise InputError(f"fusion '{fusion}' merges no lists; use rrf or weighted")
    return sorted(((s, si, row) for (si, row), s in fused.items()), key=lambda c: (-c[0], c[1], c[2]))
