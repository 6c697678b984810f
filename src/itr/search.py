"""Searching an index with an encoder: text -> images/texts, image -> images/texts.

Modes:

- ``dense``: exact inner product over the float32 vectors.
- ``sparse``: the lexicon terms of the query against the inverted index (indexes built with
  ``--repr sparse`` or ``both``); every hit can list the terms it matched.
- ``hybrid``: dense and sparse together, fused by ``fusion``:
  ``rescore`` (default) takes the sparse top ``candidates`` and re-scores them with their dense
  vectors (cost: the sparse search plus a few hundred dot products, so it keeps sparse speed);
  ``rrf`` (reciprocal rank fusion, k=60) and ``weighted`` (min-max normalised scores, ``alpha`` on
  dense) merge full dense and sparse result lists. A query with no known vocabulary term falls
  back to dense search, and the response says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .encoders.base import Encoder
from .encoders.registry import load_encoder
from .errors import InputError
from .fusion import Fusion, Mode, fuse, rescore
from .images import DEFAULT_MAX_PIXELS, load_image
from .index.ann import AnnQuery
from .index.store import Candidate, DenseIndex
from .types import Embeddings, Hit, Target

if TYPE_CHECKING:
    from .backends.milvus import MilvusIndex

MAX_QUERY_CHARS = 4096
"""Queries are cut to this many characters before tokenising; the model then truncates to its own
context length (77 tokens for CLIP, 256 for the built-in MiniLM). Longer text never helps and a
multi-megabyte query would only cost tokeniser time."""

MAX_K = 10_000


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How a query is answered (see the module docstring)."""

    k: int = 10
    target: Target = Target.IMAGES
    mode: Mode = Mode.DENSE
    fusion: Fusion = Fusion.RESCORE
    candidates: int = 200  # sparse candidates re-scored by hybrid rescore; list depth of rrf/weighted
    alpha: float = 0.5  # weight of the dense score in weighted fusion
    max_postings: int | None = None  # approximate sparse search budget per segment (None: exact)
    explain: bool = False  # attach matched terms to each hit (sparse and hybrid)
    nprobe: int | None = None  # IVF lists visited (approximate indexes; default: the tuned value)
    ef_search: int | None = None  # HNSW candidate list size (default: the tuned value)
    rerank: int | None = None  # candidates re-scored exactly, as a multiple of k (default: tuned)
    exact: bool = False  # scan every vector even where an approximate index exists
    min_score: float | None = None  # drop hits scoring below; none left: "no good match" (itr.calibration)
    rerank_depth: int = 0  # re-score the first stage's top N with the searcher's re-ranker (0: off)

    @property
    def ann(self) -> AnnQuery | None:
        if self.nprobe is None and self.ef_search is None and self.rerank is None and not self.exact:
            return None
        return AnnQuery(nprobe=self.nprobe, ef_search=self.ef_search, rerank=self.rerank, exact=self.exact)


@dataclass(frozen=True)
class SearchResponse:
    """Hits of one query, with the mode that produced them and why it differs from the one asked."""

    hits: list[Hit]
    mode: Mode
    note: str | None = None
    query_terms: list[tuple[str, float]] = field(default_factory=list)
    no_good_match: bool = False  # min_score was given and no hit reached it
    best_score: float | None = None  # with min_score: the best score before the cut


class Searcher:
    """Searches one index with the encoders it was built with.

    Args:
        encoder: must have the fingerprint recorded in the index (checked here).
        index: an opened index: a folder (``DenseIndex``) or a back end with the same candidate
            interface (``itr.backends.milvus.MilvusIndex``).
        sparse: the lexicon encoder recorded in the index (needed for sparse and hybrid modes).
    """

    def __init__(self, encoder: Encoder, index: DenseIndex | MilvusIndex, sparse: Any = None,
                 reranker: Any = None) -> None:
        index.check_encoder(encoder.fingerprint, encoder.spec)
        info = index.sparse_info
        if sparse is not None and info is not None and sparse.fingerprint != info["fingerprint"]:
            raise InputError(f"sparse model '{sparse.spec}' ({sparse.fingerprint}) is not the one the index was built "
                             f"with ('{info['spec']}', {info['fingerprint']}); rebuild with itr index ... --rebuild")
        self.encoder = encoder
        self.index = index
        self.sparse = sparse
        self.reranker = reranker  # an itr.rerank.Reranker, used when SearchOptions.rerank_depth > 0

    # -- convenience: hits only -------------------------------------------------------------------
    def search_text(self, query: str, *, k: int = 10, target: Target = Target.IMAGES, mode: Mode | str = Mode.DENSE,
                    **options: Any) -> list[Hit]:
        """Hits for one text query, best first."""
        return self.query_texts([query], SearchOptions(k=k, target=target, mode=Mode(mode), **options))[0].hits

    def search_texts(self, queries: Sequence[str], *, k: int = 10, target: Target = Target.IMAGES,
                     mode: Mode | str = Mode.DENSE, **options: Any) -> list[list[Hit]]:
        """Batch text search: one list of hits per query."""
        opts = SearchOptions(k=k, target=target, mode=Mode(mode), **options)
        return [r.hits for r in self.query_texts(queries, opts)]

    def search_image(self, image: Image.Image | str | os.PathLike[str], *, k: int = 10,
                     target: Target = Target.IMAGES, max_pixels: int = DEFAULT_MAX_PIXELS,
                     mode: Mode | str = Mode.DENSE, **options: Any) -> list[Hit]:
        """Hits for one query image (a PIL image or a file path), best first."""
        opts = SearchOptions(k=k, target=target, mode=Mode(mode), **options)
        return self.query_image(image, opts, max_pixels=max_pixels).hits

    def search_vectors(self, vectors: np.ndarray, *, k: int = 10, target: Target = Target.IMAGES,
                       ann: AnnQuery | None = None) -> list[list[Hit]]:
        _check_k(k)
        return self.index.search(vectors, k=k, target=target, ann=ann)

    # -- full responses ---------------------------------------------------------------------------
    def query_texts(self, queries: Sequence[str], options: SearchOptions = SearchOptions()) -> list[SearchResponse]:
        cleaned = []
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InputError("query is empty: give some text, or search by image with --image PATH")
            cleaned.append(q.strip()[:MAX_QUERY_CHARS])
        _check_k(options.k)
        self._check_mode(options.mode)
        known = self.sparse.known_terms(cleaned) if options.mode is not Mode.DENSE else None
        first = self._first_stage(options)
        responses = self._answer(self.encoder.encode_texts(cleaned), "text", first, known)
        if options.rerank_depth:
            responses = [self._rerank(r, text=q, options=options) for r, q in zip(responses, cleaned, strict=True)]
        return [self._cut(r, options) for r in responses]

    def query_image(self, image: Image.Image | str | os.PathLike[str], options: SearchOptions = SearchOptions(), *,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> SearchResponse:
        _check_k(options.k)
        self._check_mode(options.mode)
        if not isinstance(image, Image.Image):
            if not Path(image).is_file():
                raise InputError(f"{image}: no such image file")
            image = load_image(image, draft_size=self.encoder.draft_size, max_pixels=max_pixels)
        response = self._answer(self.encoder.encode_images([image]), "image", self._first_stage(options))[0]
        if options.rerank_depth:
            response = self._rerank(response, image=image, options=options)
        return self._cut(response, options)

    def query_vector(self, vector: np.ndarray, modality: str, options: SearchOptions = SearchOptions()) -> SearchResponse:
        """Search with a stored embedding (``modality``: "image" or "text", for the sparse head):
        "more like this" for an indexed item."""
        _check_k(options.k)
        self._check_mode(options.mode)
        return self._cut(self._answer(np.asarray(vector, dtype=np.float32).reshape(1, -1), modality, options)[0],
                         options)

    def _first_stage(self, o: SearchOptions) -> SearchOptions:
        """The options of the first stage: deep enough for the re-ranker to choose from."""
        if not o.rerank_depth:
            return o
        if self.reranker is None:
            raise InputError("re-ranking needs a re-ranker: pass --rerank-model (or Searcher(..., reranker=...))")
        if o.min_score is not None:
            raise InputError("a minimum score is on dense scores, which re-ranking replaces: use one or the other")
        _check_k(o.rerank_depth)
        return replace(o, k=max(o.k, o.rerank_depth))

    def _rerank(self, response: SearchResponse, *, options: SearchOptions, text: str | None = None,
                image: Image.Image | None = None) -> SearchResponse:
        """Re-score the first ``rerank_depth`` hits jointly with the query; scores become the
        re-ranker's (its match probability), the rest of the list is dropped beyond ``k``."""
        from .rerank import rerank_order

        head = response.hits[: options.rerank_depth]
        if not head:
            return response
        if text is not None:  # text query: the hits are images (text hits: captions read as images are not)
            if options.target is not Target.IMAGES:
                raise InputError("re-ranking a text query needs --target images (the re-ranker reads image and text)")
            # Cross-encoders read at most ~384 pixels: a JPEG draft at 512 saves decoding every pixel.
            images = [load_image(h.path, draft_size=(512, 512)) for h in head if h.path]
            if len(images) != len(head):
                raise InputError("re-ranking needs every hit's image file")
            scores = self.reranker.score_pairs(images, [text] * len(head))
        else:
            if options.target is not Target.TEXTS:
                raise InputError("re-ranking an image query needs --target texts (the re-ranker reads image and text)")
            assert image is not None
            scores = self.reranker.score_pairs([image] * len(head), [h.text or "" for h in head])
        order = rerank_order(scores)
        hits = [replace(head[j], score=float(scores[j])) for j in order][: options.k]
        note = f"top {len(head)} re-ranked by {self.reranker.spec}"
        return replace(response, hits=hits, note=f"{response.note}; {note}" if response.note else note)

    def calibrated_min_score(self) -> float:
        """The "no good match" threshold ``itr calibrate`` stored for this index and model."""
        from .calibration import read_calibration

        return read_calibration(self.index.root, self.encoder.fingerprint).threshold

    @staticmethod
    def _cut(response: SearchResponse, o: SearchOptions) -> SearchResponse:
        """Apply ``min_score``: a threshold is on dense cosine scores, which dense search and hybrid
        rescore return (sparse and fused scores are on other scales)."""
        if o.min_score is None:
            return response
        if response.mode is Mode.SPARSE or (response.mode is Mode.HYBRID and o.fusion is not Fusion.RESCORE):
            raise InputError("a minimum score applies to dense scores: use --mode dense, or hybrid with "
                             "--fusion rescore")
        kept = [h for h in response.hits if h.score >= o.min_score]
        best = max((h.score for h in response.hits), default=None)
        return replace(response, hits=kept, no_good_match=not kept, best_score=best)

    def _check_mode(self, mode: Mode) -> None:
        if mode is not Mode.DENSE and self.sparse is None:
            raise InputError(f"{self.index.root} has no sparse vectors, so --mode {mode.value} cannot run; "
                             "rebuild it with itr index ... --repr both --rebuild")
        if mode is not Mode.SPARSE:
            self.index.require_representation("dense")

    def _answer(self, dense: Embeddings, modality: str, o: SearchOptions,
                known: np.ndarray | None = None) -> list[SearchResponse]:
        if o.mode is Mode.DENSE:
            cands_all = self.index.dense_candidates(dense, k=o.k, target=o.target, ann=o.ann)
            if not (o.explain and self.sparse is not None):
                return [SearchResponse([self.index.hit(c, o.target) for c in cands], Mode.DENSE) for cands in cands_all]
            q = self._sparse_queries(dense, modality, o)
            return [SearchResponse(self._explain([self.index.hit(c, o.target) for c in cands], cands, q[i], o.target),
                                   Mode.DENSE, None, self._terms(q[i])) for i, cands in enumerate(cands_all)]
        q = self._sparse_queries(dense, modality, o)
        out = []
        for i in range(len(dense)):
            row = q[i]
            terms = self._terms(row)
            if row.nnz == 0 or (known is not None and known[i] == 0):
                terms = []
                if o.mode is Mode.SPARSE:
                    out.append(SearchResponse([], Mode.SPARSE, "the query has no term in the sparse vocabulary, "
                                                               "so sparse search finds nothing; try --mode dense"))
                else:
                    hits = self.index.search(dense[i : i + 1], k=o.k, target=o.target, ann=o.ann)[0]
                    out.append(SearchResponse(hits, Mode.DENSE, "no vocabulary term in the query: hybrid fell back "
                                                                "to dense search"))
                continue
            cands = self._fuse(dense[i : i + 1], row, o)
            hits = [self.index.hit(c, o.target) for c in cands]
            if o.explain:
                hits = self._explain(hits, cands, row, o.target)
            out.append(SearchResponse(hits, o.mode, None, terms))
        return out

    def _sparse_queries(self, dense: Embeddings, modality: str, o: SearchOptions) -> Any:
        """The queries' sparse vectors, their terms chosen among those the searched side has postings for."""
        return self.sparse.encode(dense, modality, max_terms=self.sparse.query_terms,
                                  allowed=self.index.sparse_terms(o.target))

    def _terms(self, row: Any) -> list[tuple[str, float]]:
        """A query's sparse terms, largest weight first."""
        pairs = sorted(zip(row.indices.tolist(), row.data.tolist(), strict=True), key=lambda x: -x[1])
        return [(self.sparse.vocab[t].removeprefix("##"), round(float(w), 4)) for t, w in pairs]

    def _fuse(self, dense: Embeddings, q: Any, o: SearchOptions) -> list[Candidate]:
        depth = max(o.k, o.candidates)
        if o.mode is Mode.SPARSE:
            return self.index.sparse_candidates(q, k=o.k, target=o.target, max_postings=o.max_postings)[0]
        native = getattr(self.index, "hybrid_candidates", None)
        if native is not None:  # a back end with its own hybrid search (Milvus)
            return native(dense[0], q, o)  # type: ignore[no-any-return]
        sparse = self.index.sparse_candidates(q, k=depth, target=o.target, max_postings=o.max_postings)[0]
        if o.fusion is Fusion.RESCORE:
            seg_ids = np.array([si for _, si, _ in sparse], dtype=np.int64)
            rows = np.array([row for _, _, row in sparse], dtype=np.int64)
            order, scores = rescore(self.index.dense_rows(sparse, o.target), dense[0], seg_ids << 32 | rows)
            return [(float(sc), int(seg_ids[j]), int(rows[j])) for j, sc in zip(order[: o.k], scores[: o.k], strict=True)]
        dense_c = self.index.dense_candidates(dense, k=depth, target=o.target, ann=o.ann)[0]
        return fuse(dense_c, sparse, o.fusion, alpha=o.alpha)[: o.k]

    def _explain(self, hits: list[Hit], cands: list[Any], q: Any, target: Target) -> list[Hit]:
        """Attach to each hit the query terms it matched and their contributions to its sparse score."""
        from .sparse.encoder import explain_terms

        stored = self.index.term_weights(cands, q.indices, target)
        return [replace(hit, terms=explain_terms(self.sparse.vocab, q.indices, q.data, stored[i]))
                for i, hit in enumerate(hits)]


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K} (got {k})")


def open_index(index: str | os.PathLike[str]) -> DenseIndex | MilvusIndex:
    """An index folder, or a back end's export addressed as ``milvus:URI[#NAME]`` (see ``itr.backends``)."""
    from .backends import is_remote

    if is_remote(index):
        from .backends.milvus import MilvusIndex

        return MilvusIndex.open(str(index))
    return DenseIndex.open(index)


def open_searcher(index: str | os.PathLike[str], model: str | None = None) -> Searcher:
    """Open an index (folder or ``milvus:`` address) and load the encoders it was built with
    (``model``, if given, must match)."""
    from .encoders.builtin import recorded_builtin_spec

    idx = open_index(index)
    info = idx.encoder_info
    encoder = load_encoder(model or recorded_builtin_spec(info["spec"], info["fingerprint"]))
    sparse = None
    if idx.sparse_info is not None:
        from .sparse.encoder import load_sparse_encoder

        sparse = load_sparse_encoder(idx.sparse_info["spec"], encoder)
    return Searcher(encoder, idx, sparse)
