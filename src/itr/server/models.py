"""Request and response bodies of the HTTP API (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str = Field(description="One line saying what was wrong and what to do.")


class Health(BaseModel):
    status: str
    generation: int = Field(description="Commit number of the index snapshot being served.")


class Limits(BaseModel):
    max_k: int
    max_query_chars: int
    max_upload_bytes: int


class Info(BaseModel):
    index: str
    model: str
    fingerprint: str
    dim: int
    counts: dict[str, int]
    representations: list[str] = Field(description="What the index stores: dense and/or sparse vectors.")
    modes: list[str] = Field(description="Search modes this index supports.")
    sparse_model: str | None
    segments: int
    backend: str = Field("folder", description="'folder' (an ITR index folder) or 'milvus' (an export, served read-only).")
    generation: int
    read_only: bool
    limits: Limits


class Result(BaseModel):
    id: str = Field(description="Image item id, or '<item id>#<n>' for the n-th caption of an item.")
    score: float
    kind: str = Field(description="'image' or 'text'.")
    item_id: str
    path: str | None = Field(None, description="Image file of an image hit, relative to the indexed collection's "
                                               "folder (uploads: to the index folder).")
    text: str | None = Field(None, description="Caption of a text hit.")
    caption: str | None = Field(None, description="First caption of an image hit's item.")
    meta: dict[str, Any] = Field(default_factory=dict)
    thumbnail: str | None = Field(None, description="URL of the item's thumbnail, when it has an image.")
    terms: dict[str, float] | None = Field(None, description="With explain: matched sparse terms and weights.")


class SearchResult(BaseModel):
    query: str
    target: str
    mode: str = Field(description="The mode that answered (hybrid falls back to dense for unknown words).")
    note: str | None = None
    query_terms: dict[str, float] = Field(default_factory=dict)
    took_ms: float
    min_score: float | None = Field(None, description="The threshold applied (min_score=auto: the calibrated one).")
    no_good_match: bool = Field(False, description="min_score was given and no result reached it.")
    best_score: float | None = Field(None, description="With min_score: the best score before the cut.")
    results: list[Result]


class Item(BaseModel):
    id: str
    image: str | None = Field(description="The item's image file, relative to the indexed collection's folder "
                                          "(uploads: to the index folder); null for a text-only item.")
    captions: list[str]
    meta: dict[str, Any] = Field(default_factory=dict)
    origin: str | None = Field(None, description="'api' for items added over HTTP, null for the source's.")
    thumbnail: str | None = None


class Added(BaseModel):
    id: str
    status: str = Field(description="'added', or 'updated' when an item with this id was replaced.")
    item: Item


class Deleted(BaseModel):
    deleted: str
