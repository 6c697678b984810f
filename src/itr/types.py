"""Shared value types."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]
"""A float32 array of shape (N, D) whose rows are L2-normalised."""


class Target(StrEnum):
    """Which side of an index a query searches."""

    IMAGES = "images"
    TEXTS = "texts"


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result.

    Attributes:
        id: Stable id of the image item, or ``"<item id>#<n>"`` for the n-th caption of an item.
        score: Cosine similarity between query and result (higher is better).
        kind: ``"image"`` or ``"text"``.
        path: Image file path (image hits).
        text: Caption text (text hits).
        item_id: Id of the item the hit belongs to (same as ``id`` for image hits).
        caption: For image hits, the item's first caption, if it has one.
        meta: The item's metadata from the source.
        terms: With sparse/hybrid search and explain: the vocabulary terms query and hit share, with
            their contribution to the sparse score, largest first.
    """

    id: str
    score: float
    kind: str
    item_id: str
    path: str | None = None
    text: str | None = None
    caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    terms: list[tuple[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "score": round(self.score, 6), "kind": self.kind}
        if self.path is not None:
            out["path"] = self.path
        if self.text is not None:
            out["text"] = self.text
        if self.caption is not None:
            out["caption"] = self.caption
        out["item_id"] = self.item_id
        if self.meta:
            out["meta"] = self.meta
        if self.terms is not None:
            out["terms"] = {t: w for t, w in self.terms}
        return out
