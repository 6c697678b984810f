"""The HTTP API and web page: a FastAPI app made by ``create_app(service)``.

This module does not use ``from __future__ import annotations``: FastAPI reads parameter annotations
at run time, and some refer to the service's limits, a local of ``create_app``.

Handlers only validate, call ``IndexService`` and serialise; the engine (models, index snapshot) is
loaded once, before the app exists. Handlers are plain ``def`` functions, so FastAPI runs them in its
thread pool: model calls release the GIL, and a slow upload never blocks the event loop.
"""

import json
import os
import time
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..errors import (
    IncompatibleIndexError,
    IndexLockedError,
    InputError,
    ItrError,
    NotFoundError,
    ReadOnlyError,
    UnknownNameError,
)
from ..records import FieldError, check_meta, json_safe, parse_json
from ..search import Fusion, Mode, SearchOptions, SearchResponse
from ..service import IndexService, NewItem
from ..types import Hit, Target
from .guard import GuardMiddleware, RequestGuard
from .models import Added, Deleted, ErrorResponse, Health, Info, Item, Result, SearchResult

_STATUS: list[tuple[type[ItrError], int]] = [
    (NotFoundError, 404), (ReadOnlyError, 403), (IndexLockedError, 409), (IncompatibleIndexError, 409),
    (FieldError, 422), (InputError, 400), (UnknownNameError, 400), (ItrError, 500),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    **{str(code): {"model": ErrorResponse, "description": text}
       for code, text in [(400, "Bad request: the message says which field and why"), (404, "No such item"),
                          (422, "A parameter has the wrong type or is out of range")]},
    "413": {"description": "Request body over the upload limit (see /api/info)",
            "content": {"text/plain": {}, "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}},
}
CROSS_SITE = {"403": {"model": ErrorResponse, "description": "A cross-site request from a web page (see --allow-origin)"}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, "403": {"model": ErrorResponse, "description": "The server is read-only, or the request came "
                                                            "from another site's page"},
    "409": {"model": ErrorResponse, "description": "Another process is writing the index; retry later"},
}


def _static_dir() -> str:
    return str(resources.files("itr.server") / "static")


def create_app(service: IndexService, *, title: str = "ITR", guard: RequestGuard | None = None) -> FastAPI:
    """The app serving ``service``: ``/api/...`` (see ``/docs``) and the search page at ``/``.

    ``guard`` says which Host names and page origins are accepted (default: this machine's names and
    IP addresses, and only the server's own pages may change the index; see ``itr.server.guard``).
    """
    limits = service.limits
    # max_body_size: Starlette's body limit refuses an oversize upload with 413 as soon as it passes the
    # limit (or at once, from Content-Length), before it is spooled to disk; form fields come on top.
    app = FastAPI(title=f"{title} image-text search", version="1", responses=ERRORS,  # type: ignore[arg-type]
                  default_response_class=StrictJSONResponse,
                  description="Search an ITR index by text or image, look up, add and delete items.",
                  max_body_size=limits.max_upload_bytes + 64 * 1024)
    app.state.service = service
    app.add_middleware(GuardMiddleware, guard=guard or RequestGuard())  # type: ignore[arg-type]

    @app.exception_handler(ItrError)
    def _itr_error(request: Request, exc: ItrError) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        headers = {"Retry-After": "2"} if isinstance(exc, IndexLockedError) else None
        return StrictJSONResponse({"detail": _one_line(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        kind = next((p for p in first.get("loc", ()) if p in ("query", "body", "path")), "")
        label = f"{kind} parameter '{where}'" if kind in ("query", "path") else f"field '{where}'" if where else "request"
        return StrictJSONResponse({"detail": f"{label}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.get("/api/health", response_model=Health, tags=["service"])
    def health() -> Health:
        return Health(status="ok", generation=service.index.generation)

    @app.get("/api/info", response_model=Info, tags=["service"])
    def info() -> dict[str, Any]:
        return service.info()

    def search_options(
        k: Annotated[int, Query(ge=1, le=limits.max_k, description="Number of results.")] = 10,
        target: Annotated[Target, Query(description="Search images or captions.")] = Target.IMAGES,
        mode: Annotated[Mode, Query(description="dense, sparse or hybrid (the index must store them).")] = Mode.DENSE,
        fusion: Annotated[Fusion, Query(description="Hybrid fusion.")] = Fusion.RESCORE,
        explain: Annotated[bool, Query(description="List matched sparse terms per result.")] = False,
        nprobe: Annotated[int | None, Query(ge=1, le=65536, description="Approximate IVF index: lists to visit (default: tuned).")] = None,
        ef_search: Annotated[int | None, Query(ge=1, le=65536, description="Approximate HNSW index: candidate list size (default: tuned).")] = None,
        exact: Annotated[bool, Query(description="Scan every vector, ignoring approximate indexes.")] = False,
        rerank: Annotated[bool, Query(description="Re-rank the top results with the server's cross-encoder "
                                               "(itr serve --rerank-model).")] = False,
        min_score: Annotated[str | None, Query(max_length=32, pattern=r"^(auto|-?[0-9]+(\.[0-9]+)?)$",
                                               description="Leave out results scoring below this (dense scores); "
                                               "'auto': the threshold `itr calibrate` stored. Nothing left: "
                                               "no_good_match is true.")] = None,
    ) -> SearchOptions:
        """The query parameters every search endpoint takes."""
        if rerank and service.reranker is None:
            raise InputError("this server has no re-ranker: start it with itr serve ... --rerank-model MODEL")
        threshold = None
        if min_score is not None:
            threshold = service.searcher.calibrated_min_score() if min_score == "auto" else float(min_score)
        return SearchOptions(k=k, target=target, mode=mode, fusion=fusion, explain=explain, nprobe=nprobe,
                             ef_search=ef_search, exact=exact, min_score=threshold,
                             rerank_depth=service.rerank_depth if rerank else 0)

    Options = Annotated[SearchOptions, Depends(search_options)]

    @app.get("/api/search", response_model=SearchResult, tags=["search"])
    def search(
        q: Annotated[str, Query(min_length=1, max_length=limits.max_query_chars, description="Query text.")],
        opts: Options,
    ) -> SearchResult:
        """Text to images (or captions)."""
        start = time.perf_counter()
        return _result(service, q, opts, service.search_text(q, opts), start)

    @app.post("/api/search/image", response_model=SearchResult, tags=["search"], responses=CROSS_SITE)
    def search_image(
        image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, GIF, BMP, TIFF).")],
        opts: Options,
    ) -> SearchResult:
        """Image to images (or captions)."""
        start = time.perf_counter()
        name = _upload_name(image)
        data = _read_upload(image, limits.max_upload_bytes)
        return _result(service, name, opts, service.search_image(data, opts, name=name), start)

    @app.get("/api/items/{item_id:path}/similar", response_model=SearchResult, tags=["search"])
    def similar(item_id: str, opts: Options) -> SearchResult:
        """More like this: the item's own stored vector as the query (the item itself left out)."""
        start = time.perf_counter()
        return _result(service, item_id, opts, service.similar(item_id, opts), start)

    @app.get("/api/items/{item_id:path}/thumbnail", tags=["items"],
             responses={"200": {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail"},
                        "304": {"description": "Not modified (If-None-Match)"}})
    def thumbnail(
        item_id: str, request: Request,
        size: Annotated[int, Query(ge=16, le=1024, description="Longer side in pixels (rounded up to 64, 128, "
                                                                 "256 or 512).")] = 256,
    ) -> Response:
        """The item's image, resized and cached. Only files recorded in the index are ever read."""
        thumb = service.thumbnail(item_id, size)
        headers = {"ETag": f'"{thumb.etag}"', "Cache-Control": "public, max-age=300"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(thumb.data, media_type=thumb.media_type, headers=headers)

    @app.get("/api/items/{item_id:path}", response_model=Item, tags=["items"])
    def get_item(item_id: str) -> Item:
        return _item(service.public_item(item_id))

    @app.post("/api/items", response_model=Added, status_code=201, tags=["items"],
              responses={**WRITE_ERRORS, "200": {"model": Added, "description": "An item with this id was replaced"}})
    def add_item(
        response: Response,
        image: Annotated[UploadFile | None, File(description="The item's image.")] = None,
        captions: Annotated[list[str] | None, Form(description="The item's captions (repeat the field).")] = None,
        id: Annotated[str | None, Form(description="Item id (default: derived from the content; an existing id "
                                                     "is replaced).")] = None,
        meta: Annotated[str | None, Form(description="A JSON object returned with the item's hits.")] = None,
    ) -> Added:
        """Add an item (an image, captions, or both), or replace the item with the same id.
        Answers once the change is durable on disk and visible to searches."""
        data = _read_upload(image, limits.max_upload_bytes) if image is not None else None
        meta_obj: Any = {}
        if meta:
            if len(meta) > limits.max_meta_bytes:
                raise FieldError(f"field 'meta': {len(meta)} characters; the limit is {limits.max_meta_bytes} bytes")
            try:
                meta_obj = parse_json(meta, "field 'meta'")
            except InputError as exc:
                raise FieldError(str(exc)) from None
        check_meta(meta_obj, "field 'meta'", max_bytes=limits.max_meta_bytes)
        new = NewItem(image=data, captions=tuple(captions or ()), id=id, meta=meta_obj,
                      image_name=_upload_name(image) if image is not None else "upload")
        res = service.add(new)
        if res.status == "updated":
            response.status_code = 200
        return Added(id=res.id, status=res.status, item=_item(service.public_item(res.id)))

    @app.delete("/api/items/{item_id:path}", response_model=Deleted, tags=["items"], responses=WRITE_ERRORS)
    def delete_item(item_id: str) -> Deleted:
        """Delete an item. Answers once the change is durable on disk and visible to searches."""
        service.delete(item_id)
        return Deleted(deleted=item_id)

    static = _static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(os.path.join(static, "index.html"), headers={"Cache-Control": "no-cache"})

    return app


class StrictJSONResponse(JSONResponse):
    """JSON as RFC 8259 allows it, whatever an index holds: strings that are not valid Unicode (ids
    from indexes built before ids were checked) are escaped and non-finite numbers become null,
    instead of the encoder failing and the request ending in a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(json_safe(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _upload_name(upload: UploadFile) -> str:
    # The client's file name is only ever shown in messages, never used as a path.
    name = os.path.basename(upload.filename or "upload") or "upload"
    return "".join(ch for ch in name if ch.isprintable())[:100]


def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{_upload_name(upload)}: larger than the {limit}-byte upload limit")
    return data


def _thumb_url(item_id: str) -> str:
    return f"/api/items/{quote(item_id, safe='/')}/thumbnail"


def _item(rec: dict[str, Any]) -> Item:
    return Item(id=rec["id"], image=rec["image"], captions=rec["captions"], meta=rec["meta"], origin=rec["origin"],
                thumbnail=_thumb_url(rec["id"]) if rec["image"] else None)


def _hit(hit: Hit, has_image: bool, path: str | None) -> Result:
    return Result(id=hit.id, score=round(hit.score, 6), kind=hit.kind, item_id=hit.item_id, path=path,
                  text=hit.text, caption=hit.caption, meta=hit.meta,
                  thumbnail=_thumb_url(hit.item_id) if has_image else None,
                  terms=dict(hit.terms) if hit.terms is not None else None)


def _result(service: IndexService, query: str, opts: SearchOptions, res: SearchResponse, start: float) -> SearchResult:
    idx = service.index
    results = []
    for h in res.hits:
        has_image = h.kind == "image" or (idx.item(h.item_id) or {}).get("image") is not None
        results.append(_hit(h, has_image, service.public_path(h.path)))
    return SearchResult(query=query, target=opts.target.value, mode=res.mode.value, note=res.note,
                        query_terms=dict(res.query_terms), took_ms=round((time.perf_counter() - start) * 1000, 2),
                        min_score=opts.min_score, no_good_match=res.no_good_match,
                        best_score=res.best_score if opts.min_score is not None else None, results=results)
