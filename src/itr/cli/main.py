"""The ``itr`` command line: flags -> library calls -> printed results. No logic of its own."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from .._utils import display_path
from .common import err, out, print_json, progress_bars
from .common import errors as _errors
from .common import fail as _fail
from .common import progress_bar as _progress
from .common import with_spinner as _with_spinner
from .evaluate import eval_
from .train import train_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ITR: image-text retrieval. Index images and captions, search both ways, offline.")
app.add_typer(train_app, name="train")


@app.callback()
def _options(
    offline: Annotated[bool, typer.Option("--offline", help="Never contact the Hugging Face hub: hf:ORG/NAME models come from the local cache only (same as HF_HUB_OFFLINE=1).")] = False,
) -> None:
    if offline:
        # The hub's own documented switch, read by ITR at call time and by huggingface_hub and
        # transformers when they are imported (after this point: the CLI imports them lazily).
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"


@app.command()
def index(
    source: Annotated[Path, typer.Argument(help="Folder of images (recursive); JSONL of {image, captions, id?, meta?}; webdataset shards (a.tar, 'dir/{00000..00099}.tar'); a .parquet/.csv/.tsv table; with --from-embeddings: a clip-retrieval folder or an itr export parquet file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Index folder to create or update.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder: builtin (default), hf:ORG/NAME, local:PATH. With --from-embeddings: the model that computed the vectors (queries use it).")] = None,
    image_col: Annotated[str | None, typer.Option(help="Table sources (.parquet/.csv/.tsv): the image column, a path or an http(s) URL (default: image, image_path, path, url, ...).")] = None,
    caption_col: Annotated[str | None, typer.Option(help="Table sources: the caption column, a string or a list (default: caption, text, ...).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Table sources: the id column (default: id or key, else the image).")] = None,
    from_embeddings: Annotated[bool, typer.Option("--from-embeddings", help="SOURCE holds vectors computed elsewhere (clip-retrieval's img_emb/ text_emb/ metadata/, or itr export --to parquet): index them as they are, recording --model.")] = False,
    on_error: Annotated[str, typer.Option(help="Bad items: 'skip' (report at the end) or 'stop'.")] = "skip",
    rebuild: Annotated[bool, typer.Option(help="Discard the existing index contents (needed to change model).")] = False,
    replace_source: Annotated[bool, typer.Option(help="Index another source than the one the index was built from, replacing its items.")] = False,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait while another process (itr serve) writes the index.")] = 60.0,
    repr_: Annotated[str, typer.Option("--repr", help="What to store: dense (vectors), sparse (lexicon terms in an inverted index: small, fast) or both (adds hybrid search).")] = "dense",
    sparse_model: Annotated[str | None, typer.Option(help="Lexicon head for sparse vectors: builtin (default for the built-in model) or local:DIR.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Commit every N items (an interruption loses at most N).")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Images per encoding step.")] = 32,
    workers: Annotated[int | None, typer.Option(help="Image decoding threads (default: CPUs, at most 4).")] = None,
    max_pixels: Annotated[int, typer.Option(help="Refuse images above this many pixels (decompression bombs).")] = 89_478_485,
    index_kind: Annotated[str | None, typer.Option("--index", help="Dense search structure: exact, auto (fits --max-memory), hnsw, ivf-flat, ivf-sq8, ivf-pq, opq-ivf-pq, sq8, sq-fp16 or faiss:FACTORY (default: the index's own; exact for a new one).")] = None,
    max_memory: Annotated[str | None, typer.Option(help="Memory budget of the approximate structures, e.g. 2G (--index auto chooses within it).")] = None,
    ann_recall: Annotated[float, typer.Option(help="Recall@10 against exact that the approximate index is tuned for.")] = 0.95,
    ann_max_latency_ms: Annotated[float | None, typer.Option(help="Latency target of one query: tuning then takes the best recall within it.")] = None,
    ann_min_rows: Annotated[int, typer.Option(help="Segments with fewer vectors are searched exactly.")] = 20_000,
    ann_mmap: Annotated[bool, typer.Option(help="Search the approximate index memory-mapped: less resident memory, slower.")] = False,
    engine: Annotated[str, typer.Option(help="Where encoding runs: 'local' (this process) or 'ray' (a Ray Data pipeline; needs the ray extra).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to run on (default: start Ray on this machine).")] = None,
    ray_actors: Annotated[int | None, typer.Option(help="Encoder actors (default: one per CPU of the cluster).")] = None,
    ray_gpus_per_actor: Annotated[float, typer.Option(help="GPUs each encoder actor reserves.")] = 0.0,
    shard_size: Annotated[int, typer.Option(help="Ray: items per shard (unit of work, of resumption and of load balance).")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index a folder or JSONL file. Re-running only encodes new/changed items and drops removed ones."""
    from ..collection import OnError, scan_source
    from ..encoders import load_encoder
    from ..index.ann import AnnPolicy, parse_memory
    from ..index.build import BuildOptions, build_index
    from ..index.manifest import representations

    with _errors():
        if engine not in ("local", "ray"):
            _fail(f"--engine must be 'local' or 'ray' (got '{engine}')")
        if engine == "local" and ray_address is not None:
            _fail("--ray-address needs --engine ray")
        ann = None
        if index_kind is not None or max_memory is not None:
            ann = AnnPolicy(kind=index_kind or "auto", max_memory=parse_memory(max_memory), recall=ann_recall,
                            max_latency_ms=ann_max_latency_ms, min_rows=ann_min_rows, mmap=ann_mmap)
        policy = _choice(OnError, on_error, "--on-error")
        if from_embeddings:
            _index_from_embeddings(source, out_dir, model, rebuild=rebuild, replace_source=replace_source,
                                   checkpoint_every=checkpoint_every, lock_timeout=lock_timeout,
                                   json_out=json_out, quiet=quiet)
            return
        model = model or "builtin"
        reprs = representations(repr_)
        if ann is not None and ann.enabled and "dense" not in reprs:
            _fail(f"--index {ann.kind} searches dense vectors; --repr sparse keeps none (use --repr both, "
                  "or --index exact)")
        from ..source_formats import TableColumns

        columns = TableColumns(image=image_col, caption=caption_col, id=id_col)
        scan = scan_source(source, on_error=policy, columns=columns)
        with contextlib.ExitStack() as stack:
            session = None
            if engine == "ray":  # Ray starts in the background while the model loads
                from ..index.distributed import RayOptions, RaySession, build_index_ray

                session = stack.enter_context(RaySession(ray_address))
            loading = time.perf_counter()
            encoder = _with_spinner(f"loading model {model}", lambda: load_encoder(model), quiet or json_out)
            load_seconds = time.perf_counter() - loading
            sparse = None
            if "sparse" in reprs:
                from ..sparse.encoder import default_sparse_spec, load_sparse_encoder

                sparse = load_sparse_encoder(sparse_model or default_sparse_spec(encoder), encoder)
            options = BuildOptions(checkpoint_every=checkpoint_every, batch_size=batch_size, workers=workers,
                                   max_pixels=max_pixels, on_error=policy, rebuild=rebuild, representation=repr_,
                                   ann=ann, replace_source=replace_source, lock_timeout=lock_timeout)
            waiting = (lambda msg: None) if json_out else (lambda msg: err.print(f"[yellow]note:[/] {msg}", markup=True))
            with progress_bars(not (quiet or json_out)) as bar:
                if session is not None:
                    ray_options = RayOptions(address=ray_address, actors=ray_actors, shard_size=shard_size,
                                             gpus_per_actor=ray_gpus_per_actor)
                    report = build_index_ray(scan, encoder, out_dir, options, ray_options,
                                             progress=bar("encoding (ray)"), sparse=sparse,
                                             ann_progress=bar("approximate index"), session=session,
                                             on_wait=waiting)
                else:
                    report = build_index(scan, encoder, out_dir, options, progress=bar("encoding"), sparse=sparse,
                                         ann_progress=bar("approximate index"), on_wait=waiting)
    if json_out:
        print_json({**report.to_dict(), "model_load_seconds": round(load_seconds, 3)})
        return
    c = report.counts
    # The encode rate alone: on a small set, loading the model and writing would otherwise dominate it.
    rate = (f"; encoded {report.images_encoded} images in {report.encode_seconds or report.seconds:.1f} s "
            f"({report.images_per_second:.1f} images/s)" if report.images_encoded else "")
    out.print(f"index {display_path(out_dir)}: {c.get('images', 0)} images, {c.get('texts', 0)} texts "
              f"({report.added} added, {report.updated} updated, {report.removed} removed, "
              f"{report.unchanged} unchanged) in {report.seconds:.1f} s, model loaded in {load_seconds:.1f} s"
              + rate)
    for line in report.ann:
        out.print(f"  approximate index {line}", markup=False)
    if report.resumed_shards:
        out.print(f"  resumed: {report.resumed_shards} shard(s) finished by an earlier run were not encoded again")
    if report.failed:
        err.print(f"[yellow]{len(report.failed)} item(s) skipped:[/]")
        for line in report.failed[:10]:
            err.print(f"  {line}", markup=False)
        if len(report.failed) > 10:
            err.print(f"  ... and {len(report.failed) - 10} more (see --json for all)")




def _index_from_embeddings(source: Path, out_dir: Path, model: str | None, *, rebuild: bool, replace_source: bool,
                           checkpoint_every: int, lock_timeout: float, json_out: bool, quiet: bool) -> None:
    from ..backends.file_export import read_embeddings
    from ..encoders import load_encoder
    from ..index.build import BuildOptions
    from ..index.precomputed import build_from_embeddings

    emb = read_embeddings(source)
    recorded = emb.encoder
    spec = model or (recorded or {}).get("spec")
    if spec is None:
        _fail(f"{display_path(source)} does not say which model computed its vectors; name it with --model "
              "(queries are encoded by that model)")
    encoder = _with_spinner(f"loading model {spec}", lambda: load_encoder(spec), quiet or json_out)
    if recorded and recorded.get("fingerprint") and recorded["fingerprint"] != encoder.fingerprint:
        _fail(f"{display_path(source)} was computed by model '{recorded.get('spec')}' (fingerprint "
              f"{recorded['fingerprint']}), not by '{spec}' ({encoder.fingerprint}) as loaded here")
    options = BuildOptions(checkpoint_every=checkpoint_every, rebuild=rebuild, replace_source=replace_source,
                           lock_timeout=lock_timeout)
    with _progress("indexing vectors", not (quiet or json_out)) as progress:
        report = build_from_embeddings(emb.items, encoder.describe(), emb.dim, out_dir, options,
                                       source=emb.path, progress=progress)
    if json_out:
        print_json(report.to_dict())
        return
    c = report.counts
    out.print(f"index {display_path(out_dir)}: {c.get('images', 0)} images, {c.get('texts', 0)} texts from "
              f"precomputed vectors ({report.added} added, {report.updated} updated, {report.removed} removed, "
              f"{report.unchanged} unchanged) in {report.seconds:.1f} s; queries use {spec}", markup=False)
    for line in report.failed[:10]:
        err.print(f"  skipped: {line}", markup=False)


def _choice(enum: Any, value: str, flag: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        _fail(f"{flag} must be one of: {', '.join(m.value for m in enum)} (got '{value}')")


@app.command()
def search(
    index_dir: Annotated[str, typer.Argument(metavar="INDEX", help="Index folder, or an export: milvus:URI[#NAME].")],
    query: Annotated[str | None, typer.Argument(help="Text query (none: read queries from stdin, one per line).")] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Search with this image instead of text.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    target: Annotated[str, typer.Option(help="What to search: 'images' or 'texts'.")] = "images",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder (default: the index's own).")] = None,
    mode: Annotated[str, typer.Option(help="dense, sparse (inverted index; needs --repr sparse|both) or hybrid (needs both).")] = "dense",
    fusion: Annotated[str, typer.Option(help="Hybrid: rescore (sparse candidates, dense scores), rrf or weighted.")] = "rescore",
    candidates: Annotated[int, typer.Option(help="Hybrid: sparse candidates to re-score / list depth to fuse.")] = 200,
    max_postings: Annotated[int | None, typer.Option(help="Sparse: approximate, stop after N postings (default: exact).")] = None,
    explain: Annotated[bool, typer.Option(help="Sparse/hybrid: show the terms each result matched.")] = False,
    nprobe: Annotated[int | None, typer.Option(help="Approximate IVF index: lists to visit (default: the tuned value).")] = None,
    ef_search: Annotated[int | None, typer.Option(help="Approximate HNSW index: candidate list size (default: tuned).")] = None,
    rerank: Annotated[int | None, typer.Option(help="Approximate index: re-score k*N candidates exactly (default: tuned).")] = None,
    exact: Annotated[bool, typer.Option(help="Scan every vector, ignoring approximate indexes.")] = False,
    min_score: Annotated[str | None, typer.Option(help="Leave out results scoring below this (dense scores); 'auto': the threshold itr calibrate stored. Nothing left: 'no good match'.")] = None,
    rerank_model: Annotated[str | None, typer.Option(help="Re-rank the top results with this cross-encoder: local:PATH or hf:ORG/NAME (an image-text matching head, e.g. BLIP ITM).")] = None,
    rerank_depth: Annotated[int, typer.Option(help="With --rerank-model: how many first-stage results it re-scores.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index by text or by image, for images or for texts. With no query and no --image,
    reads one query per line from stdin (or prompts, in a terminal), loading the model once."""
    from dataclasses import replace

    from ..search import Fusion, Mode, SearchOptions, open_searcher
    from ..types import Target

    with _errors():
        tgt = _choice(Target, target, "--target")
        options = SearchOptions(k=k, target=tgt, mode=_choice(Mode, mode, "--mode"),
                                fusion=_choice(Fusion, fusion, "--fusion"), candidates=candidates,
                                max_postings=max_postings, explain=explain, nprobe=nprobe, ef_search=ef_search,
                                rerank=rerank, exact=exact)
        if image is not None and query is not None:
            _fail("give a text query or --image, not both")
        if image is None and query is not None and not query.strip():
            _fail("query is empty: give some text, or search by image with --image PATH")
        threshold = None
        if min_score is not None and min_score != "auto":
            try:
                threshold = float(min_score)
            except ValueError:
                _fail(f"--min-score must be a number or 'auto' (got '{min_score}')")
        if rerank_model is not None and rerank_depth < 1:
            _fail(f"--rerank-depth must be at least 1 (got {rerank_depth})")
        searcher = _with_spinner("loading model", lambda: open_searcher(index_dir, model), json_out)
        if rerank_model is not None:
            from ..rerank import load_reranker

            searcher.reranker = _with_spinner("loading re-ranker", lambda: load_reranker(rerank_model), json_out)
            options = replace(options, rerank_depth=rerank_depth)
        if min_score == "auto":
            threshold = searcher.calibrated_min_score()
        if threshold is not None:
            options = replace(options, min_score=threshold)
        if image is not None:
            _print_response(searcher.query_image(image, options), options, f"image {display_path(image)}",
                            {"image": display_path(image)}, json_out)
            return
        if query is not None:
            _print_response(searcher.query_texts([query], options)[0], options, query, query, json_out)
            return
    _query_loop(searcher, options, json_out)


def _query_loop(searcher: Any, options: Any, json_out: bool) -> None:
    """``itr search INDEX`` without a query: one query per line of stdin (a prompt in a terminal),
    with the model loaded once. A bad query costs that query, never the loop."""
    import sys

    interactive = sys.stdin.isatty()
    if interactive:
        err.print("type a query and press Enter (an empty line or Ctrl-D ends)", markup=False)
    while True:
        try:
            line = input("query> ") if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and line == "":
            break  # end of input
        text = line.strip()
        if not text:
            if interactive:
                break
            continue
        with _errors(exit_on_error=False):
            _print_response(searcher.query_texts([text], options)[0], options, text, text, json_out, compact=True)


def _print_response(response: Any, options: Any, shown: str, query_json: Any, json_out: bool,
                    compact: bool = False) -> None:
    from ..types import Target

    tgt, explain = options.target, options.explain
    hits = response.hits
    if json_out:
        payload: dict[str, Any] = {"query": query_json, "target": tgt.value, "mode": response.mode.value}
        if response.note:
            payload["note"] = response.note
        if response.query_terms:
            payload["query_terms"] = dict(response.query_terms)
        if options.min_score is not None:
            payload.update(min_score=options.min_score, no_good_match=response.no_good_match,
                           best_score=response.best_score)
        payload["results"] = [h.to_dict() for h in hits]
        print_json(payload, compact=compact)
        return
    if response.no_good_match:
        best = "" if response.best_score is None else f"; the best scored {response.best_score:.4f}"
        out.print(f"no good match: nothing scores at least {options.min_score:.4f}{best}", markup=False)
        return
    if response.note:
        err.print(f"[yellow]note:[/] {response.note}")
    if explain and response.query_terms:
        err.print("query terms: " + ", ".join(f"{t} {w:.2f}" for t, w in response.query_terms), markup=False)
    table = Table(title=f"{tgt.value} for: {shown}" + ("" if response.mode.value == "dense" else f" ({response.mode.value})"),
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", overflow="fold")
    if tgt is Target.IMAGES:
        table.add_column("caption", overflow="fold")
        table.add_column("path", overflow="fold")
    else:
        table.add_column("text", overflow="fold")
    if explain:
        table.add_column("matched terms", overflow="fold")
    for rank, h in enumerate(hits, 1):
        terms = [", ".join(f"{t} {w:.2f}" for t, w in h.terms or [])] if explain else []
        if h.kind == "image":
            table.add_row(str(rank), f"{h.score:.3f}", display_path(h.item_id), h.caption or "",
                          _short_path(h.path or ""), *terms)
        else:
            table.add_row(str(rank), f"{h.score:.3f}", h.id, h.text or "", *terms)
    out.print(table)


def _short_path(path: str) -> str:
    """Relative to the working directory when under it: tables stay readable."""
    import os

    rel = os.path.relpath(path)
    return display_path(rel if not rel.startswith("..") else path)


@app.command()
def info(
    index_dir: Annotated[str, typer.Argument(metavar="INDEX", help="Index folder, or an export: milvus:URI[#NAME].")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what an index holds: model, counts, format, size on disk."""
    from ..backends import is_remote
    from ..index.store import DenseIndex

    with _errors():
        if is_remote(index_dir):
            from ..backends.milvus import MilvusIndex

            m = MilvusIndex.read_manifest(index_dir)
            extra = {"source": m.get("source_index"), "updated_at": m.get("exported_at")}
            unfinished = "the export was interrupted; run the same itr export command again to finish it"
        else:
            idx = DenseIndex.open(index_dir)
            m = idx.manifest
            extra = {"segments": len(m["segments"]), "source": m.get("source"), "updated_at": m.get("updated_at"),
                     "bytes": idx.nbytes(), "ann": _ann_summary(m)}
            unfinished = "the last indexing run was interrupted; run itr index again to finish it"
        summary = {"index": index_dir, "format": m["format"], "format_version": m["format_version"],
                   "model": m["encoder"]["spec"], "fingerprint": m["encoder"]["fingerprint"], "dim": m["dim"],
                   "counts": m.get("counts"), "representations": m["representations"],
                   "sparse_model": (m.get("sparse") or {}).get("spec"), "complete": m["complete"], **extra}
    if json_out:
        print_json(summary)
        return
    for key, value in summary.items():
        out.print(f"{key:>15}: {value}", markup=False)
    if not m["complete"]:
        err.print(f"note: {unfinished}")


@app.command()
def export(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index folder to export.")],
    to: Annotated[str, typer.Option("--to", help="Where: milvus:http://HOST:PORT[#NAME] (server or cluster; token from ITR_MILVUS_TOKEN), milvus:FILE.db[#NAME] (Milvus Lite), clip-retrieval:DIR (img_emb/ text_emb/ metadata/, for autofaiss and clip back) or parquet:FILE.")],
    replace: Annotated[bool, typer.Option(help="Drop or overwrite an existing export there first (Milvus: needed to change model).")] = False,
    batch_size: Annotated[int, typer.Option(help="Milvus: items per write.")] = 256,
    milvus_index: Annotated[str, typer.Option(help="Milvus index type of the dense vectors: AUTOINDEX (the server chooses), FLAT (exact), HNSW, IVF_FLAT, ...")] = "AUTOINDEX",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Copy an index into a vector database (Milvus: searchable and servable from there; re-running
    writes only what changed, an interrupted export resumes) or into files other tools read
    (clip-retrieval's layout, parquet; written whole, then renamed into place)."""
    from ..export import export_index

    with _errors():
        options: dict[str, Any] = {"replace": replace}
        if to.startswith("milvus:"):
            options.update(batch_size=batch_size, dense_index=milvus_index)
        with _progress("exporting", not quiet and not json_out) as progress:
            report = export_index(index_dir, to, progress=progress, **options)
    if json_out:
        print_json(report.to_dict())
        return
    if not to.startswith("milvus:"):
        left = "".join(f"; left out: {n} {what}" for what, n in report.left_out.items())
        err.print(f"exported {display_path(index_dir)} to {report.to}: {report.images} images, {report.texts} texts "
                  f"in {report.seconds:.1f} s{left}", markup=False)
        return
    err.print(f"exported {display_path(index_dir)} to {report.address}: {report.written} written, "
              f"{report.unchanged} unchanged, {report.removed} removed, {len(report.skipped)} skipped "
              f"in {report.seconds:.1f} s")
    for item_id, why in report.skipped[:20]:
        err.print(f"  skipped {item_id}: {why}", markup=False)
    err.print(f"search it: itr search {report.address} \"a query\"")


def _ann_summary(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The approximate-search policy and, per segment side, what was built and how it measured."""
    policy = manifest.get("ann")
    if not policy:
        return None
    built = [{"segment": s["name"], "side": side, **{k: a.get(k) for k in (
        "factory", "rows", "bytes", "knob", "value", "rerank", "recall", "p50_ms")}}
        for s in manifest["segments"] for side, a in (s.get("ann") or {}).items()]
    return {"policy": policy, "built": built}


@app.command()
def models(
    cached: Annotated[bool, typer.Option("--cached", help="List the models in the local Hugging Face cache and what each needs.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the model names that --model accepts (with --cached: the hub models already downloaded)."""
    from ..encoders import list_encoders

    if not cached:
        names = list_encoders()
        if json_out:
            print_json(names)
        for name in [] if json_out else names:
            out.print(name, markup=False)
        return
    from ..encoders.hub import hub_cache_dir, list_cached_models

    with _errors():
        found = list_cached_models()
    if json_out:
        print_json([{"repo": m.repo, "spec": m.spec, "kind": m.kind, "size_bytes": m.size_bytes,
                     "revisions": m.revisions, "folder": str(m.folder), "needs": m.needs} for m in found])
        return
    if not found:
        out.print(f"no models in the Hugging Face cache {display_path(hub_cache_dir())}; "
                  "hf:ORG/NAME downloads one on first use", markup=False)
        return
    table = Table(box=box.SIMPLE, title=f"Hugging Face cache: {display_path(hub_cache_dir())}")
    for col in ("use as", "kind", "size", "needs"):
        table.add_column(col)
    for m in found:
        use = m.spec and (f"--rerank-model {m.spec}" if m.kind == "re-ranker" else f"--model {m.spec}")
        table.add_row(use or m.repo, m.kind, f"{m.size_bytes / 2**20:.1f} MiB", m.needs or "nothing")
    out.print(table)


app.command("eval")(eval_)


@app.command()
def calibrate(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="Index folder to store the threshold in.")],
    on: Annotated[str, typer.Option("--on", help="Labelled dataset to fit on (as itr eval takes it), e.g. gcompris-photos, jsonl:val.jsonl.")],
    precision: Annotated[float, typer.Option(help="Share of the answers given that must be right (0-1), with half the queries having no match.")] = 0.9,
    split: Annotated[str, typer.Option(help="Split of the dataset to fit on.")] = "val",
    images_root: Annotated[Path | None, typer.Option(help="Folder holding the dataset's images.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder (default: the index's own).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fit the score below which `itr search --min-score auto` (and the HTTP API) says "no good match"."""
    from ..calibration import write_calibration
    from ..eval import LoadOptions, load_eval_dataset
    from ..eval.calibrate import calibrate as fit
    from ..search import open_searcher

    with _errors():
        if not 0 < precision <= 1:
            _fail(f"--precision must be in (0, 1] (got {precision})")
        if not (index_dir / "manifest.json").is_file():
            _fail(f"{index_dir}: not an index folder (no manifest.json)")
        searcher = _with_spinner("loading model", lambda: open_searcher(str(index_dir), model), quiet)
        with _progress(f"preparing {on}", not quiet) as progress:
            ds = load_eval_dataset(on, LoadOptions(split=split, images_root=str(images_root) if images_root else None),
                                   progress=progress)
        with _progress(f"fitting on {ds.name} ({ds.split})", not quiet) as progress:
            cal = fit(ds, searcher.encoder, target_precision=precision, progress=progress)
        path = write_calibration(index_dir, cal)
    verdict = "" if cal.reached_target else f" (the target {precision:g} was not reached: this is the most precise)"
    out.print(f"threshold {cal.threshold:.4f}{verdict}: on {cal.queries} queries of {cal.dataset}, "
              f"{100 * cal.precision:.1f} % of answers right, {100 * cal.coverage:.1f} % of queries answered right; "
              f"saved to {display_path(path)}", markup=False)


@app.command()
def serve(
    index_dir: Annotated[str, typer.Argument(metavar="INDEX", help="Index folder to serve, or an export: milvus:URI[#NAME] (served read-only).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder (default: the index's own).")] = None,
    read_only: Annotated[bool, typer.Option(help="Refuse adding and deleting items.")] = False,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload, in MB.")] = 20.0,
    max_k: Annotated[int, typer.Option(help="Largest number of results a request may ask for.")] = 100,
    max_batch: Annotated[int, typer.Option(help="Queries encoded together when requests queue up (1: no batching).")] = 64,
    thumbnail_cache: Annotated[Path | None, typer.Option(help="Folder for cached thumbnails (default: the user cache).")] = None,
    allow_host: Annotated[list[str] | None, typer.Option(help="A host name the server is reached by, besides IP addresses, localhost and this machine's name (repeat; '*': any). Requests naming another are refused (DNS rebinding).")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(help="An origin (https://app.example.org) whose pages may add and delete items (repeat; '*': any). Other sites' pages are refused (CSRF).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level (info, warning, error...).")] = "info",
    rerank_model: Annotated[str | None, typer.Option(help="A cross-encoder for requests with rerank=true (local:PATH, hf:ORG/NAME).")] = None,
    rerank_depth: Annotated[int, typer.Option(help="With --rerank-model: first-stage results it re-scores per request.")] = 50,
) -> None:
    """Serve an index over HTTP: a search page at / and a JSON API under /api (schema at /docs)."""
    from ..service import IndexService, ServiceLimits

    with _errors():
        from .._utils import require

        uvicorn = require("uvicorn", "server", "itr serve")
        from ..server import create_app
        from ..server.guard import RequestGuard
        from ..thumbnails import ThumbnailCache

        limits = ServiceLimits(max_k=max_k, max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_batch=max_batch)
        thumbs = ThumbnailCache(thumbnail_cache, max_pixels=limits.max_pixels)
        reranker = None
        if rerank_model is not None:
            from ..rerank import load_reranker

            if not 1 <= rerank_depth <= max_k * 10:
                _fail(f"--rerank-depth must be between 1 and {max_k * 10} (got {rerank_depth})")
            reranker = _with_spinner("loading re-ranker", lambda: load_reranker(rerank_model), False)
        service = _with_spinner(f"loading {display_path(index_dir)}",
                                lambda: IndexService.open(index_dir, model=model, read_only=read_only, limits=limits,
                                                          thumbnails=thumbs, reranker=reranker,
                                                          rerank_depth=rerank_depth), False)
        app_ = create_app(service, guard=RequestGuard(allowed_hosts=tuple(allow_host or ()),
                                                      allowed_origins=tuple(allow_origin or ())))
        c = service.index.counts
        err.print(f"serving {display_path(index_dir)} ({c['images']} images, {c['texts']} texts) on "
                  f"http://{host}:{port}/" + (" (read-only)" if service.read_only else ""))
    try:
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal (exit status 130 /
        # -15, as a shell expects); Ctrl-C is the normal way to stop, so it is not reported as an error.
        uvicorn.run(app_, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    err.print("server stopped; every acknowledged change is on disk")


@app.command("make-dataset")
def make_dataset(
    name: Annotated[str, typer.Argument(help="Dataset to build: 'emoji', 'openclipart', 'tuxpaint' or 'gcompris' (evaluation only).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write images and JSONL into.")],
    lang: Annotated[str, typer.Option(help="CLDR language for the captions (emoji).")] = "en",
    limit: Annotated[int | None, typer.Option(help="Build only the first N items (emoji).")] = None,
) -> None:
    """Build an offline dataset from Debian-packaged data (images + captions JSONL)."""
    from ..datasets import (
        build_emoji_dataset,
        build_gcompris_dataset,
        build_openclipart_dataset,
        build_tuxpaint_dataset,
    )

    with _errors():
        if name not in ("emoji", "openclipart", "tuxpaint", "gcompris"):
            _fail(f"unknown dataset '{name}'; available: emoji, openclipart, tuxpaint, gcompris")
        with _progress(f"building {name}", True) as progress:
            if name == "emoji":
                path = build_emoji_dataset(out_dir, lang=lang, limit=limit, progress=progress)
            elif name in ("gcompris", "tuxpaint"):  # every language at once: NAME-<lang>.jsonl
                build = build_gcompris_dataset if name == "gcompris" else build_tuxpaint_dataset
                path = build(out_dir, progress=progress)
                if lang != "en":
                    path = path.with_name(f"{name}-{lang}.jsonl")
                    if not path.is_file():
                        _fail(f"{name} has no captions in '{lang}' (see {display_path(out_dir)}/{name}-*.jsonl)")
            else:
                path = build_openclipart_dataset(out_dir, progress=progress)
    out.print(str(path), markup=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; ``argv`` makes it callable from tests."""
    app(args=argv, prog_name="itr")


if __name__ == "__main__":
    main()
