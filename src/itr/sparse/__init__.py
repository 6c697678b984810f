"""Learned-sparse (lexicon) retrieval: sparse term-weight vectors served from an inverted index."""

from __future__ import annotations

from .index import SparseIndex, prune_rows

__all__ = ["SparseIndex", "prune_rows"]
