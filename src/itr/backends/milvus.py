"""Milvus as ITR's distributed serving back end: connection, retries, collections, search.

Why Milvus (measurements in ``docs/scaling.md``): it is the one candidate that keeps dense vectors,
learned-sparse vectors (``SPARSE_FLOAT_VECTOR`` on an inverted index) and hybrid search in one
engine, *and* whose embedded mode (Milvus Lite: a ``.db`` file, or ``milvus-lite server`` speaking
gRPC) answers the same ``pymilvus`` client API as a production cluster. So the code the tests run
against Milvus Lite is the code a cluster user runs.

Layout of an export named NAME: two collections, ``NAME_images`` and ``NAME_texts``, one row per
image / caption, primary key = ITR's hit id (item id, or ``item#n`` for a caption). Each row keeps
what a search hit shows (path or text, first caption, meta) and its item's signature (for
incremental re-export). The collections' property ``itr.manifest`` records what the vectors mean:
encoder spec and fingerprint, dimension, representations, sparse model; a searcher with another
model, or an export of another dimension, is refused.

Addresses: ``milvus:http://host:19530#photos`` (server or cluster; the token, if any, from
``ITR_MILVUS_TOKEN``), ``milvus:./photos.db#photos`` (Milvus Lite, in process). NAME defaults to
``itr``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .._utils import require
from ..errors import IncompatibleIndexError, InputError, ItrError, NotFoundError
from ..index.store import ManifestFacts, check_encoder, check_k
from ..types import Embeddings, Hit, Target

SCHEME = "milvus:"
DEFAULT_NAME = "itr"
TOKEN_ENV = "ITR_MILVUS_TOKEN"
MANIFEST_PROPERTY = "itr.manifest"
FORMAT = "itr-milvus"
FORMAT_VERSION = 1
MAX_ID_BYTES = 4096
MAX_TEXT_BYTES = 65_535
SEARCH_LIMIT = 16_384  # Milvus's largest topk
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_REMOTE = ("http://", "https://", "tcp://", "grpc://", "unix:")

MilvusCandidate = tuple[float, int, str]
"""(score, 0, primary key): Milvus results in the shape of ``itr.index.store.Candidate``."""

T = TypeVar("T")


class BackendUnavailableError(ItrError):
    """The back end did not answer after every retry."""


class BackendError(ItrError):
    """The back end answered with an error (not a connection problem: retrying would not help)."""


@dataclass(frozen=True)
class MilvusAddress:
    """Where an export lives: a Milvus URI (server, cluster or Lite ``.db`` file) and a name."""

    uri: str
    name: str = DEFAULT_NAME

    @classmethod
    def parse(cls, spec: str) -> MilvusAddress:
        if not spec.startswith(SCHEME):
            raise InputError(f"'{spec}' is not a Milvus address; write milvus:URI[#NAME], e.g. "
                             "milvus:http://localhost:19530#photos or milvus:./photos.db")
        uri, _, name = spec[len(SCHEME):].partition("#")
        name = name or DEFAULT_NAME
        if not uri:
            raise InputError(f"'{spec}' names no Milvus URI; write milvus:http://HOST:PORT[#NAME] or milvus:FILE.db[#NAME]")
        if not _NAME_RE.match(name):
            raise InputError(f"'{name}' cannot name Milvus collections: use letters, digits and _ "
                             "(not starting with a digit)")
        if not uri.startswith(_REMOTE):
            if not uri.endswith(".db"):
                raise InputError(f"'{uri}': a local Milvus Lite file must end in .db (or give a server as "
                                 "http://HOST:PORT)")
            uri = os.path.abspath(uri)
        return cls(uri, name)

    @property
    def is_local(self) -> bool:
        """A Milvus Lite file opened in this process (nothing to be unreachable)."""
        return not self.uri.startswith(_REMOTE)

    def collection(self, target: Target) -> str:
        return f"{self.name}_{target.value}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.uri}" + ("" if self.name == DEFAULT_NAME else f"#{self.name}")


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential back-off for a back end that does not answer.

    Defaults: 6 tries over about 8 s (0.25, 0.5, 1, 2, 4 s between them), enough for a server or a
    load balancer that restarts, short enough that a wrong address fails while the user waits.
    Errors the server returns (bad request, missing collection) are not retried.
    """

    attempts: int = 6
    first_delay: float = 0.25
    max_delay: float = 4.0
    call_timeout: float = 30.0  # seconds one server call may take

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay < 0 or self.max_delay < 0:
            raise InputError("retry policy: attempts must be at least 1 and delays not negative")

    def delays(self) -> list[float]:
        """Pauses between tries."""
        return [min(self.max_delay, self.first_delay * 2**i) for i in range(self.attempts - 1)]


DEFAULT_RETRY = RetryPolicy()


def _unreachable(exc: BaseException) -> bool:
    """Whether an error means "no answer" (worth retrying) rather than "the server said no"."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpcio
        grpc = None
    if grpc is not None and isinstance(exc, grpc.RpcError):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # type: ignore[attr-defined]
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

    if isinstance(exc, ConnectError | MilvusUnavailableException):
        return True
    if isinstance(exc, MilvusException):
        msg = str(exc.message).lower()
        return exc.code == 2 or "server unavailable" in msg or "fail connecting" in msg or "deadline" in msg
    return isinstance(exc, ConnectionError | TimeoutError)


def _released(exc: BaseException) -> bool:
    """Whether Milvus refused a read because the collection is not loaded."""
    return "load()" in _message(exc) or "released" in _message(exc)


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(msg).split())[:300]


class MilvusConnection:
    """A pymilvus client and the retry policy every call goes through.

    Args:
        address: where the export lives.
        retry: back-off for a server that does not answer.
        sleep: the pause function (tests pass a recorder instead of waiting).
    """

    def __init__(self, address: MilvusAddress, retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        pymilvus = require("pymilvus", "milvus", "a milvus: index")
        # pymilvus logs every failed call with a traceback before raising; ITR reports it in one line.
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        self.address = address
        self.retry = retry
        self._sleep = sleep
        self.loaded = False
        if address.is_local:
            require("milvus_lite", "milvus", "a Milvus Lite file (milvus:FILE.db)")
            # Milvus Lite serves in this process and logs a traceback for each RPC it does not
            # implement (AllocTimestamp, asked by query_iterator before it falls back): noise.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            os.makedirs(os.path.dirname(address.uri) or ".", exist_ok=True)
        self.client = self.call("connect", lambda: pymilvus.MilvusClient(
            uri=address.uri, token=os.environ.get(TOKEN_ENV, ""), timeout=retry.call_timeout))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one client call; retry it while the server does not answer, then fail in one line."""
        start = time.monotonic()
        delays = self.retry.delays()
        for attempt in range(self.retry.attempts):
            try:
                return fn()
            except ItrError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one-line errors
                if self.loaded and _released(exc):
                    self.loaded = False  # a restarted server released the collections: load them, try again
                    self.load()
                    continue
                if not _unreachable(exc):
                    raise BackendError(f"{self.address}: Milvus refused {what}: {_message(exc)}") from None
                last = exc
            if attempt < len(delays):
                self._sleep(delays[attempt])
        raise BackendUnavailableError(
            f"cannot reach Milvus at {self.address.uri} ({what}) after {self.retry.attempts} tries in "
            f"{time.monotonic() - start:.1f} s: {_message(last)}; start the server or check the address") from None

    # -- collections ---------------------------------------------------------------------------------
    def has(self, target: Target) -> bool:
        return bool(self.call("has_collection", lambda: self.client.has_collection(self.address.collection(target))))

    def read_manifest(self) -> dict[str, Any] | None:
        """The export's manifest, or None when NAME_images does not exist.

        Raises:
            IncompatibleIndexError: the collection exists but is not an ITR export of a known version.
        """
        name = self.address.collection(Target.IMAGES)
        if not self.has(Target.IMAGES):
            return None
        desc = self.call("describe_collection", lambda: self.client.describe_collection(name))
        raw = (desc.get("properties") or {}).get(MANIFEST_PROPERTY)
        if raw is None:
            raise IncompatibleIndexError(f"{self.address}: collection '{name}' is not an ITR export (no "
                                         f"{MANIFEST_PROPERTY}); choose another #NAME")
        manifest: dict[str, Any] = json.loads(raw)
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise IncompatibleIndexError(f"{self.address}: export format {manifest.get('format')} "
                                         f"v{manifest.get('format_version')} is not {FORMAT} v{FORMAT_VERSION}; "
                                         "export the index again with itr export ... --replace")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        raw = json.dumps(manifest, sort_keys=True)
        for target in Target:
            name = self.address.collection(target)
            self.call("alter_collection_properties", lambda n=name: self.client.alter_collection_properties(
                n, properties={MANIFEST_PROPERTY: raw}))

    def load(self) -> None:
        """Load both collections for search. After this, a call that finds them released (the
        server restarted) loads them again and is retried."""
        for target in Target:
            name = self.address.collection(target)
            self.call("load_collection", lambda n=name: self.client.load_collection(n))
        self.loaded = True

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection has nothing to report
            pass

    def rows(self, target: Target, fields: list[str], batch: int = 4096) -> Iterator[dict[str, Any]]:
        """Every row of one collection (the fields named), in batches."""
        name = self.address.collection(target)
        it = self.call("query_iterator", lambda: self.client.query_iterator(name, batch_size=batch, filter="",
                                                                          output_fields=fields))
        try:
            while True:
                page = self.call("query_iterator.next", it.next)
                if not page:
                    return
                yield from page
        finally:
            it.close()


def in_filter(field: str, values: list[str]) -> str:
    """A Milvus filter ``field in [...]``. Milvus Lite has no filter templates, so the values are
    written as JSON string literals (Milvus's string escapes are JSON's)."""
    return f"{field} in {json.dumps(values, ensure_ascii=False)}"


def sparse_dict(indices: np.ndarray, values: np.ndarray, empty_term: int) -> dict[int, float]:
    """A CSR row as Milvus wants it. Milvus refuses empty sparse vectors, so a row with no term gets
    a negligible weight on ``empty_term`` (the vocabulary size: a term no query ever has)."""
    if len(indices) == 0:
        return {int(empty_term): 1e-30}
    return {int(t): float(w) for t, w in zip(indices, values, strict=True)}


def _search_params(ann: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"metric_type": "IP"}
    extra: dict[str, Any] = {}
    if ann is not None:
        if ann.nprobe is not None:
            extra["nprobe"] = ann.nprobe
        if ann.ef_search is not None:
            extra["ef"] = ann.ef_search
    if extra:
        params["params"] = extra
    return params


class MilvusIndex(ManifestFacts):
    """An ITR export in Milvus, with the candidate interface of ``itr.index.store.DenseIndex``: a
    ``Searcher`` (and so the CLI and the HTTP server) searches it as it searches an index folder.

    Candidates are ``(score, 0, primary key)``. The fields a hit shows come back with the search
    and are kept in a small cache until ``hit`` turns the candidate into a ``Hit``.
    """

    HIT_CACHE = 50_000

    def __init__(self, conn: MilvusConnection, manifest: dict[str, Any]) -> None:
        self.conn = conn
        self.address = conn.address
        self.manifest = manifest
        self.root = str(conn.address)  # what messages name, as DenseIndex.root
        self.segments: tuple[()] = ()
        self._hits: OrderedDict[tuple[Target, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._sparse_terms: dict[Target, np.ndarray | None] = {}

    @classmethod
    def read_manifest(cls, spec: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> dict[str, Any]:
        """An export's manifest, finished or not, without loading its collections (``itr info``)."""
        conn = MilvusConnection(MilvusAddress.parse(spec), retry)
        try:
            manifest = conn.read_manifest()
            if manifest is None:
                raise NotFoundError(f"{conn.address}: no ITR export named '{conn.address.name}'; create it with "
                                    f"itr export INDEX --to {conn.address}")
            return manifest
        finally:
            conn.close()

    @classmethod
    def open(cls, spec: str | MilvusAddress, *, retry: RetryPolicy = DEFAULT_RETRY,
             sleep: Callable[[float], None] = time.sleep) -> MilvusIndex:
        """Connect to an export and load it for search.

        Raises:
            NotFoundError: nothing is exported under that name.
            IncompatibleIndexError: the export is not finished, or not an ITR export.
            BackendUnavailableError: the server did not answer after every retry.
        """
        address = spec if isinstance(spec, MilvusAddress) else MilvusAddress.parse(spec)
        conn = MilvusConnection(address, retry, sleep)
        manifest = conn.read_manifest()
        if manifest is None:
            names = conn.call("list_collections", conn.client.list_collections)
            conn.close()
            raise NotFoundError(f"{address}: no ITR export named '{address.name}' (collections: "
                                f"{', '.join(names) or 'none'}); create it with itr export INDEX --to {address}")
        if not manifest.get("complete"):
            conn.close()
            raise IncompatibleIndexError(f"{address}: the export was interrupted before it finished; run the "
                                         "same itr export command again to complete it")
        conn.load()
        return cls(conn, manifest)

    def close(self) -> None:
        self.conn.close()

    # -- what the index is (generation, encoder_info, dim, counts... from ManifestFacts) ----------------
    def check_encoder(self, fingerprint: str, spec: str) -> None:
        check_encoder(self.root, self.manifest, fingerprint, spec)

    # -- search ---------------------------------------------------------------------------------------
    def _fields(self, target: Target) -> list[str]:
        return ["path", "caption", "meta"] if target is Target.IMAGES else ["item", "text", "meta"]

    def _search(self, target: Target, data: list[Any], field: str, limit: int, params: dict[str, Any]) -> list[Any]:
        name = self.address.collection(target)
        return list(self.conn.call("search", lambda: self.conn.client.search(
            name, data=data, anns_field=field, limit=min(limit, SEARCH_LIMIT), search_params=params,
            output_fields=self._fields(target))))

    def _candidates(self, target: Target, results: list[Any], k: int) -> list[list[MilvusCandidate]]:
        out = []
        with self._lock:
            for row in results:
                cands = []
                for h in row:
                    pk = str(h["id"] if "id" in h else h["pk"])
                    self._remember((target, pk), h.get("entity") or {})
                    cands.append((float(h["distance"]), 0, pk))
                # Equal scores: the lower key first, as DenseIndex breaks ties by row order.
                out.append(sorted(cands, key=lambda c: (-c[0], c[2]))[:k])
        return out

    def _remember(self, key: tuple[Target, str], fields: dict[str, Any]) -> None:
        self._hits[key] = fields
        self._hits.move_to_end(key)
        while len(self._hits) > self.HIT_CACHE:
            self._hits.popitem(last=False)

    def sparse_terms(self, target: Target) -> np.ndarray | None:
        """The terms with postings on one side, as the export recorded them (None: an older export).
        Decoded once: the searcher asks on every query, and the same array keeps the encoder's slice cached."""
        if target not in self._sparse_terms:
            from ..sparse.index import unpack_terms

            packed = (self.manifest.get("sparse_terms") or {}).get(target.value)
            info = self.manifest.get("sparse") or {}
            self._sparse_terms[target] = (unpack_terms(packed, int(info["vocab_size"]))
                                          if packed and info.get("vocab_size") else None)
        return self._sparse_terms[target]

    def dense_candidates(self, queries: Embeddings, *, k: int, target: Target,
                         ann: Any = None) -> list[list[MilvusCandidate]]:
        """Top-k (score, 0, key) per query row, best first; ``ann``'s nprobe / ef_search go to
        Milvus's own index (ignored by FLAT)."""
        q = self.dense_queries(queries, k)
        res = self._search(target, [row.tolist() for row in q], "dense", k, _search_params(ann))
        return self._candidates(target, res, k)

    def sparse_candidates(self, queries: Any, *, k: int, target: Target,
                          max_postings: int | None = None) -> list[list[MilvusCandidate]]:
        """Top-k per row of a sparse query matrix; only documents sharing a term with the query.
        ``max_postings`` (ITR's own approximate sparse search) has no Milvus equivalent: exact."""
        check_k(k)
        self.require_representation("sparse")
        m = queries.tocsr()
        out: list[list[MilvusCandidate]] = [[] for _ in range(m.shape[0])]
        nonempty = [i for i in range(m.shape[0]) if m.indptr[i + 1] > m.indptr[i]]
        if nonempty:
            data = [sparse_dict(m.indices[m.indptr[i]:m.indptr[i + 1]], m.data[m.indptr[i]:m.indptr[i + 1]], 0)
                    for i in nonempty]
            res = self._search(target, data, "sparse", k, {"metric_type": "IP"})
            for i, cands in zip(nonempty, self._candidates(target, res, k), strict=True):
                out[i] = [c for c in cands if c[0] > 0]
        return out

    def hybrid_candidates(self, dense: np.ndarray, sparse_row: Any, options: Any) -> list[MilvusCandidate]:
        """Hybrid search in Milvus. ``rescore``: the sparse top ``candidates`` re-ranked by their dense
        vectors (as ITR does); ``rrf`` / ``weighted``: Milvus's own ``hybrid_search`` rankers over a
        dense and a sparse request (Milvus's weighted ranker normalises scores with arctan, ITR's
        with min-max, so weighted scores differ from an index folder's)."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        from ..fusion import RRF_K, Fusion, rescore

        target, k = options.target, options.k
        depth = min(max(k, options.candidates), SEARCH_LIMIT)
        if options.fusion is Fusion.RESCORE:
            cands = self.sparse_candidates(sparse_row, k=depth, target=target)[0]
            if not cands:
                return []
            order, scores = rescore(self.dense_rows(cands, target), dense, np.arange(len(cands)))
            return [(float(s), 0, cands[j][2]) for j, s in zip(order[:k], scores[:k], strict=True)]
        m = sparse_row.tocsr()
        requests = [AnnSearchRequest([np.asarray(dense, dtype=np.float32).tolist()], "dense",
                                     _search_params(options.ann), depth),
                    AnnSearchRequest([sparse_dict(m.indices, m.data, 0)], "sparse", {"metric_type": "IP"}, depth)]
        ranker = RRFRanker(RRF_K) if options.fusion is Fusion.RRF else WeightedRanker(options.alpha, 1 - options.alpha)
        name = self.address.collection(target)
        res = self.conn.call("hybrid_search", lambda: self.conn.client.hybrid_search(
            name, requests, ranker, limit=k, output_fields=self._fields(target)))
        return self._candidates(target, list(res), k)[0]

    def _get(self, target: Target, keys: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        name = self.address.collection(target)
        rows = self.conn.call("get", lambda: self.conn.client.get(name, ids=keys, output_fields=fields))
        return {str(r["id"]): r for r in rows}

    def dense_rows(self, candidates: list[MilvusCandidate], target: Target) -> np.ndarray:
        """The dense vectors of some candidates (hybrid re-scoring), fetched in one call."""
        self.require_representation("dense")
        if not candidates:
            return np.zeros((0, self.dim), dtype=np.float32)
        got = self._get(target, [c[2] for c in candidates], ["dense"])
        return np.array([got[c[2]]["dense"] for c in candidates], dtype=np.float32)

    def term_weights(self, candidates: list[MilvusCandidate], terms: np.ndarray, target: Target) -> list[np.ndarray]:
        """Per candidate, the stored weight of each query term (for ``explain``)."""
        got = self._get(target, [c[2] for c in candidates], ["sparse"]) if candidates else {}
        out = []
        for c in candidates:
            stored = got.get(c[2], {}).get("sparse") or {}
            out.append(np.array([float(stored.get(int(t), 0.0)) for t in terms], dtype=np.float32))
        return out

    def search(self, queries: Embeddings, *, k: int = 10, target: Target = Target.IMAGES,
               ann: Any = None) -> list[list[Hit]]:
        return [[self.hit(c, target) for c in row] for row in self.dense_candidates(queries, k=k, target=target, ann=ann)]

    def hit(self, candidate: MilvusCandidate, target: Target) -> Hit:
        score, _, key = candidate
        with self._lock:
            fields = self._hits.get((target, key))
        if fields is None:
            fields = self._get(target, [key], self._fields(target)).get(key, {})
        meta = fields.get("meta") or {}
        if target is Target.IMAGES:
            return Hit(id=key, score=score, kind="image", item_id=key, path=fields.get("path"),
                       caption=fields.get("caption") or None, meta=meta)
        return Hit(id=key, score=score, kind="text", item_id=fields.get("item", key), text=fields.get("text"), meta=meta)

    # -- items ------------------------------------------------------------------------------------------
    def _captions(self, item_id: str, fields: list[str]) -> list[dict[str, Any]]:
        name = self.address.collection(Target.TEXTS)
        rows = self.conn.call("query", lambda: self.conn.client.query(
            name, filter=in_filter("item", [item_id]), output_fields=["ord", *fields]))
        return sorted(rows, key=lambda r: r["ord"])

    def item(self, item_id: str) -> dict[str, Any] | None:
        """A live item: its record plus ``texts`` (its captions), or None."""
        image = self._get(Target.IMAGES, [item_id], ["path", "meta", "origin"]).get(item_id)
        captions = self._captions(item_id, ["text", "meta", "origin"])
        if image is None and not captions:
            return None
        first = image or captions[0]
        return {"id": item_id, "image": image["path"] if image else None, "meta": first.get("meta") or {},
                "origin": first.get("origin") or None, "texts": [c["text"] for c in captions]}

    def item_vector(self, item_id: str) -> tuple[np.ndarray, str] | None:
        """A live item's stored dense vector and its modality (as ``DenseIndex.item_vector``)."""
        self.require_representation("dense")
        image = self._get(Target.IMAGES, [item_id], ["dense"]).get(item_id)
        if image is not None:
            return np.asarray(image["dense"], dtype=np.float32), "image"
        captions = self._captions(item_id, ["dense"])
        return (np.asarray(captions[0]["dense"], dtype=np.float32), "text") if captions else None

    def nbytes(self) -> int | None:
        """Unknown: the server's storage is not ITR's to measure."""
        return None
