"""``itr eval``: Recall@K of models on datasets; flags -> library calls -> printed tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from ..errors import InputError, ItrError
from .common import err, out, print_json
from .common import errors as _errors
from .common import fail as _fail
from .common import progress_bar as _progress
from .common import with_spinner as _with_spinner


def eval_(
    datasets: Annotated[list[str], typer.Argument(
        metavar="DATASET...", help="jsonl:PATH, karpathy:PATH (with --images-root), emoji[:LANG[,LANG...]], openclipart, gcompris[-photos|-drawings][:LANG,...], tuxpaint; matching sets: emoji-attributes[:LANG], sugarcrepe:FOLDER, winoground:FOLDER.")],
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="Encoder; repeat to compare several.")] = None,
    indexes: Annotated[list[str] | None, typer.Option("--index", help="Index kind; repeat to compare: exact, auto, hnsw, ivf-flat, ivf-sq8, ivf-pq, opq-ivf-pq, sq8, sq-fp16 (as itr index --index builds them), faiss:FACTORY[@PARAMS] (e.g. faiss:HNSW32@efSearch=64), sparse[@max_postings=N], hybrid[:rescore|rrf|weighted][@candidates=N].")] = None,
    sparse_model: Annotated[str | None, typer.Option(help="Lexicon head for sparse/hybrid kinds (default: the model's shipped one).")] = None,
    split: Annotated[str | None, typer.Option(help="Split to evaluate (default: test for karpathy and built-in sets).")] = None,
    images_root: Annotated[Path | None, typer.Option(help="Folder holding the dataset's images.")] = None,
    skip_missing: Annotated[bool, typer.Option(help="Evaluate on the images that exist/decode when some do not.")] = False,
    max_captions: Annotated[int | None, typer.Option(help="Captions per image (0: all; karpathy default 5).")] = None,
    tie: Annotated[str, typer.Option(help="Tie rule: 'pessimistic' (ties count against) or 'optimistic'.")] = "pessimistic",
    protocol: Annotated[str, typer.Option(help="itr (default), clip_benchmark (every caption), karpathy5 (first 5 captions), lavis (every caption; one matrix per direction).")] = "itr",
    decode: Annotated[str, typer.Option(help="reference: every JPEG pixel, no EXIF turn, as the benchmarks' loaders; fast: reduced-size JPEG decoding as indexing does.")] = "reference",
    ci: Annotated[bool, typer.Option("--ci", help="Bootstrap 95 % confidence intervals (images resampled), and a paired test of each run against the first on its dataset.")] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for --ci.")] = 1000,
    failures: Annotated[int, typer.Option(help="Write the N worst queries each way with their top results (Markdown and a contact-sheet PNG per run).")] = 0,
    failures_dir: Annotated[Path, typer.Option(help="Folder for the --failures files.")] = Path("failures"),
    perturb: Annotated[list[str] | None, typer.Option("--perturb", help="Robustness: evaluate again on perturbed images; repeat: jpeg[@quality=10], blur[@radius=3], downscale[@factor=4], crop[@keep=0.5], rotate[@degrees=30], typographic[@size=0.2] (another item's caption written on the image).")] = None,
    rerank_model: Annotated[str | None, typer.Option(help="Also evaluate the model re-ranked by this cross-encoder (local:PATH, hf:ORG/NAME), LAVIS's two-matrix protocol.")] = None,
    rerank_depth: Annotated[int, typer.Option(help="With --rerank-model: results re-scored per query (LAVIS k_test: 128 Flickr30K, 256 COCO).")] = 128,
    no_match: Annotated[float | None, typer.Option(help="Fit a 'no good match' threshold at this answer precision (0-1) on the dataset's val split and report how it does on the evaluated split.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON ('-': stdout).")] = None,
    md_path: Annotated[Path | None, typer.Option("--md", help="Write the comparison as a Markdown table.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Write a recall-vs-K plot (.png/.svg/.pdf).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per encoding step.")] = 32,
    workers: Annotated[int | None, typer.Option(help="Image decoding threads.")] = None,
    seed: Annotated[int, typer.Option(help="Seed (sampling of latency queries).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Recall@K both ways (plus speed and size) of one or more models on one or more datasets."""
    from ..encoders import load_encoder
    from ..eval import EvalOptions, LoadOptions, load_eval_dataset, run_eval
    from ..eval.perturb import parse_perturbation
    from ..eval.protocols import captions_for, get_protocol
    from ..eval.report import (
        LANGUAGE_COLUMNS,
        MATCHING_COLUMNS,
        TERMINAL_COLUMNS,
        check_plot_path,
        language_rows,
        matching_rows,
        mrv_text,
        plot_recall,
        reports_json,
        robustness_lines,
        terminal_header,
        terminal_tables,
        uncertainty_lines,
        write_json,
        write_markdown,
    )
    from ..eval.runner import add_comparisons, check_index_kind

    models = models or ["builtin"]
    indexes = indexes or ["exact"]
    to_stdout = json_path is not None and str(json_path) == "-"
    quiet = quiet or to_stdout
    reports: list[dict[str, Any]] = []
    skipped_models: list[str] = []
    with _errors():
        if tie not in ("pessimistic", "optimistic"):
            _fail(f"--tie must be 'pessimistic' or 'optimistic' (got '{tie}')")
        if decode not in ("reference", "fast"):
            _fail(f"--decode must be 'reference' or 'fast' (got '{decode}')")
        if no_match is not None and not 0 < no_match <= 1:
            _fail(f"--no-match must be a precision in (0, 1] (got {no_match})")
        if failures < 0:
            _fail(f"--failures must be 0 or more (got {failures})")
        if ci and resamples < 10:
            _fail(f"--resamples must be at least 10 (got {resamples})")
        chosen = get_protocol(protocol)
        max_captions = captions_for(chosen, max_captions)
        for kind in indexes:
            check_index_kind(kind)
        if plot_path is not None:
            check_plot_path(plot_path)
        load = LoadOptions(split=split, images_root=str(images_root) if images_root else None,
                           skip_missing=skip_missing, max_captions=max_captions)
        options = EvalOptions(batch_size=batch_size, workers=workers, skip_missing=skip_missing,
                              tie=tie, seed=seed, decode=decode, protocol=chosen.name,  # type: ignore[arg-type]
                              ci_resamples=resamples if ci else 0, failures=failures,
                              perturb=tuple(perturb or ()), rerank_depth=rerank_depth if rerank_model else 0)
        if rerank_model is not None and rerank_depth < 1:
            _fail(f"--rerank-depth must be at least 1 (got {rerank_depth})")
        _check_eval_models(models, indexes, sparse_model)  # every combination, before any encoding
        reranker = None
        if rerank_model is not None:
            from ..rerank import load_reranker

            reranker = _with_spinner("loading re-ranker", lambda: load_reranker(rerank_model), quiet)
        for spec in options.perturb:
            parse_perturbation(spec)  # before minutes of encoding
        from ..eval.matching import is_matching_spec, load_matching_set

        loaded, matching = [], []
        for spec in datasets:
            with _progress(f"preparing {spec}", not quiet) as progress:
                if is_matching_spec(spec):
                    matching.append(load_matching_set(spec, images_root=str(images_root) if images_root else None,
                                                      skip_missing=skip_missing, progress=progress))
                else:
                    loaded.append(load_eval_dataset(spec, load, progress=progress))
        val_sets: dict[str, Any] = {}
        if no_match is not None:  # the val splits --no-match fits on, before any encoding
            from dataclasses import replace

            for ds in loaded:
                if ds.split == "val":
                    _fail("--no-match fits on the val split: evaluate another one (--split test)")
                try:
                    val_sets[ds.name] = load_eval_dataset(ds.name, replace(load, split="val"))
                except InputError as exc:
                    _fail(f"--no-match fits its threshold on the val split of {ds.name}, which it cannot "
                          f"give ({exc}); calibrate on another set with itr calibrate")
        for model in models:
            try:
                reports.extend(_eval_one_model(model, loaded, matching, val_sets, indexes, options, sparse_model,
                                               reranker, no_match, load_encoder, run_eval, quiet,
                                               batch_size, workers, skip_missing, seed))
            except ItrError as exc:
                if len(models) == 1:
                    raise
                # One model that cannot run costs that model: the others' reports are still written.
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                skipped_models.append(f"{model}: {message}")
                err.print(f"[yellow]skipped model {model}:[/] {message}", highlight=False)
        for r in reports:  # the reports say what the run left out
            if skipped_models:
                r["skipped_models"] = list(skipped_models)
        if ci:
            add_comparisons(reports, resamples=resamples, seed=seed)
        if failures:
            from ..eval.failures import write_failures

            for r in reports:
                if "failures" in r:
                    md_file, _ = write_failures(r, failures_dir)
                    r["failures_files"] = str(md_file)
        if json_path is not None and not to_stdout:
            write_json(reports, json_path)
        if md_path is not None:
            write_markdown(reports, md_path)
        if plot_path is not None:
            plot_recall(reports, plot_path)
    if to_stdout:
        print_json(reports_json(reports))
        return
    for title, rows in terminal_tables(reports):
        table = Table(title=f"Recall@K (%) · {title}", title_justify="left", box=box.SIMPLE_HEAD)
        for i, col in enumerate(TERMINAL_COLUMNS):
            table.add_column(col, justify="left" if i == 0 else "right", overflow="fold", no_wrap=i > 0)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    for r in reports:
        if r.get("task") == "matching":
            mt = Table(title=f"{r['dataset']} · {r['model']}: matching within groups (%, ties wrong)",
                       title_justify="left", box=box.SIMPLE_HEAD)
            for i, col in enumerate(MATCHING_COLUMNS):
                mt.add_column(col, justify="left" if i == 0 else "right")
            for row in matching_rows(r):
                mt.add_row(*row)
            out.print(mt)
        if "per_language" in r:
            run = r["model"] if r["index"] == "exact" else f"{r['model']} · {r['index']}"
            lt = Table(title=f"{r['dataset']} · {run}: per language ({mrv_text(r['mrv'])})",
                       title_justify="left", box=box.SIMPLE_HEAD)
            for i, col in enumerate(LANGUAGE_COLUMNS):
                lt.add_column(terminal_header(col), justify="left" if i == 0 else "right")
            for row in language_rows(r):
                lt.add_row(*row)
            out.print(lt)
        if r.get("skipped_images"):
            err.print(f"[yellow]{r['dataset']}: {r['skipped_images']} image(s) left out (--skip-missing)[/]")
    for line in uncertainty_lines(reports):
        out.print(line, markup=False)
    for line in robustness_lines(reports):
        out.print(line, markup=False)
    for r in reports:
        rr = r.get("reranked")
        if rr and r["index"] == indexes[0]:
            out.print(f"{r['dataset']} · {r['model']} re-ranked by {rr['reranker']} (top {rr['depth']}, protocol lavis): "
                      f"i2t R@1 {rr['i2t']['R@1']:.1f}, t2i R@1 {rr['t2i']['R@1']:.1f}, RSUM {rr['rsum']:.1f} "
                      f"({rr['rsum'] - r['rsum']:+.1f}); {rr['ms_per_query']:.1f} ms per query", markup=False)
    for r in reports:
        nm = r.get("no_match")
        if nm and r["index"] == indexes[0]:
            out.print(f"{r['dataset']} · {r['model']}: 'no good match' below {nm['threshold']:.4f} (fitted on "
                      f"{nm['fitted_on']} at precision {nm['target_precision']:g}): answers {100 * nm['answer_precision']:.1f} % "
                      f"right, {100 * nm['coverage']:.1f} % of queries answered right; 'no match' precision "
                      f"{100 * nm['no_match_precision']:.1f} %, recall {100 * nm['no_match_recall']:.1f} %", markup=False)
    for r in reports:
        if "failures_files" in r:
            err.print(f"failures: {r['failures_files']} (and its contact sheet)")
    if chosen.name != "itr":
        err.print(f"protocol: {chosen.name} ({chosen.reproduces})")
    err.print(f"ties: {tie} (a wrong item with the same score ranks above the right one)"
              if tie == "pessimistic" else "ties: optimistic (only strictly better wrong items count)")
    if skipped_models:
        err.print(f"[bold red]error:[/] {len(skipped_models)} model(s) skipped: " + "; ".join(skipped_models),
                  highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _check_eval_models(models: list[str], indexes: list[str], sparse_model: str | None) -> None:
    """Refuse at once every model that cannot load or cannot pair with a sparse/hybrid index."""
    from ..encoders.registry import check_encoder_spec
    from ..errors import ItrError
    from ..eval.galleries import needs_sparse
    from ..sparse.encoder import check_sparse_pairing

    problems = []
    sparse_kinds = [k for k in indexes if needs_sparse(k)]
    for model in models:
        try:
            check_encoder_spec(model)
            if sparse_kinds:
                check_sparse_pairing(model, sparse_model)
        except ItrError as exc:
            where = f"--model {model}" + (f" with --index {sparse_kinds[0]}" if sparse_kinds and "lexicon" in str(exc) else "")
            problems.append(f"{where}: {str(exc).splitlines()[0]}")
    if problems:
        _fail("nothing evaluated: " + "; ".join(problems))


def _eval_one_model(model: str, loaded: list[Any], matching: list[Any], val_sets: dict[str, Any], indexes: list[str],
                    options: Any, sparse_model: str | None, reranker: Any, no_match: float | None,
                    load_encoder: Any, run_eval: Any, quiet: bool, batch_size: int, workers: int | None,
                    skip_missing: bool, seed: int) -> list[dict[str, Any]]:
    """Every dataset with one model: its reports."""
    from dataclasses import replace

    from ..eval.galleries import needs_sparse
    from ..eval.matching import run_matching

    reports: list[dict[str, Any]] = []
    encoder = _with_spinner(f"loading model {model}", lambda: load_encoder(model), quiet)
    sparse = None
    if any(needs_sparse(k) for k in indexes):  # once per model, not once per dataset
        from ..sparse.encoder import default_sparse_spec, load_sparse_encoder

        sparse = load_sparse_encoder(sparse_model or default_sparse_spec(encoder), encoder)
    for ds in loaded:
        run_options = options
        if no_match is not None:
            from ..eval.calibrate import calibrate

            with _progress(f"{model}: no-match threshold on {ds.name} (val)", not quiet) as progress:
                run_options = replace(options, calibration=calibrate(val_sets[ds.name], encoder,
                                                                     target_precision=no_match,
                                                                     options=options, progress=progress))
        with _progress(f"{model} on {ds.name}", not quiet) as progress:
            reports.extend(run_eval(ds, encoder, index_kinds=indexes, options=run_options, progress=progress,
                                    sparse=sparse, reranker=reranker))
    for ms in matching:
        with _progress(f"{model} on {ms.name}", not quiet) as progress:
            reports.append(run_matching(ms, encoder, batch_size=batch_size, workers=workers,
                                        skip_missing=skip_missing, seed=seed, progress=progress))
    return reports

