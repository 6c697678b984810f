"""``itr train ...``: training commands (flags -> a frozen config -> library call -> printed metrics)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import err, errors, fail, out, print_json, progress_bar

train_app = typer.Typer(no_args_is_help=True, help="Train heads or fine-tune models on image-caption pairs.")

# Options the head-training commands share.
DataSpecs = Annotated[list[str] | None, typer.Option(
    "--data", "-d", help="Training data spec, repeatable (train split; val split picks the best epoch).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _train_heads(train: Callable[..., dict[str, Any]], config: Any, out_dir: Path, quiet: bool,
                 json_out: bool) -> dict[str, Any] | None:
    """Run a head trainer with a feature progress bar and its log on stderr; with --json, print the
    metrics and return None (nothing else to print)."""
    with errors(), progress_bar("features", not (quiet or json_out)) as progress:
        metrics = train(config, out_dir, progress=progress,
                        log=None if quiet or json_out else (lambda line: err.print(line, markup=False)))
    if json_out:
        print_json(metrics)
        return None
    return metrics


@train_app.command("projector")
def projector(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained heads (use as --model local:DIR).")],
    data: DataSpecs = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Images per step (each with one of its captions).")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")] = 1e-3,
    hidden: Annotated[int, typer.Option(help="Hidden width of the heads.")] = 1024,
    text_head: Annotated[bool, typer.Option(help="Train a text-side head too (needed for non-English queries).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed (runs are bit-identical for the same seed and data).")] = 0,
    dedup_distance: Annotated[int | None, typer.Option(
        help="Drop training images within this many pHash bits (and of like colour) of any evaluation image; "
             "-1 keeps them. Default: the recipe's (6; v1: -1).", show_default=False)] = None,
    text_model: Annotated[str | None, typer.Option(
        help="Frozen text encoder the heads read: minilm (English) or use-m (16 languages). Default: the recipe's.",
        show_default=False)] = None,
    recipe: Annotated[str, typer.Option(
        help="v2: three sources, the v2 bridge and the gate on MiniLM (builtin = builtin:proj-v2); multi: the same "
             "on the multilingual USE-m, captions in its 16 languages (builtin:multi); v1: the first heads "
             "(builtin:proj-v1).")] = "v2",
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train projection heads for the built-in model (the defaults reproduce the shipped `builtin`)."""
    from dataclasses import replace

    from ..encoders.projector import TEXT_DIMS
    from ..train.projector import ProjectorTrainConfig, train_projector

    recipes = {"v2": ProjectorTrainConfig, "multi": ProjectorTrainConfig.multi, "v1": ProjectorTrainConfig.v1}
    if recipe not in recipes:
        fail(f"unknown recipe '{recipe}'; valid: {', '.join(recipes)}")
    if text_model is not None and text_model not in TEXT_DIMS:
        fail(f"unknown text model '{text_model}'; valid: {', '.join(TEXT_DIMS)}")
    if text_model not in (None, "minilm") and recipe == "v1":
        fail("--recipe v1 reads MiniLM only (its bridge's class texts are MiniLM embeddings); drop --text-model")
    defaults = recipes[recipe]()
    config = replace(
        defaults, data=tuple(data) if data else defaults.data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        heads=replace(defaults.heads, hidden=hidden, text_head=text_head,
                      text_model=defaults.heads.text_model if text_model is None else text_model),
        dedup_distance=defaults.dedup_distance if dedup_distance is None else dedup_distance)
    metrics = _train_heads(train_projector, config, out_dir, quiet, json_out)
    if metrics is None:
        return
    dropped = {k: n for k, n in metrics.get("near_duplicates_dropped", {}).items() if n}
    if dropped:
        out.print("near-duplicates of evaluation images left out of training: "
                  + ", ".join(f"{n} of {k}" for k, n in dropped.items()), markup=False)
    gate = metrics.get("gate_selection")
    if gate:
        out.print(f"gate (chosen on leave-one-source-out validation): c={gate['gate'][0]}, tau={gate['gate'][1]}"
                  + (f" ({gate['note']})" if gate.get("note") else ""), markup=False)
    out.print(f"heads written to {out_dir} (best epoch {metrics['best_epoch']}, "
              f"{metrics['n_train_images']} images, {metrics['train_seconds']:.0f} s of training)", markup=False)
    for name in ("val", "test"):
        for r in metrics[name]:
            langs = r.get("per_language", {})
            extra = (" (" + ", ".join(f"{lg} {m['rsum']:.1f}" for lg, m in langs.items()) + ")") if langs else ""
            out.print(f"  {name:>4} {r['dataset']}: RSUM {r['rsum']:.1f}{extra}", markup=False)
    for r in metrics.get("held_out", []):
        if "unavailable" in r:
            err.print(f"  held-out {r['dataset']}: not measured ({r['unavailable']})", markup=False)
            continue
        h, b = r["heads"], r["bridge"]
        verdict = "beat" if r["beats_bridge"] else "[bold red]do not beat[/]"
        out.print(f"  held-out {r['dataset']} (never trained on): RSUM {h['rsum']:.1f}, t2i R@1 {h['t2i']['R@1']:.1f}; "
                  f"{r.get('bridge_spec', 'builtin:conse')}: RSUM {b['rsum']:.1f}, t2i R@1 {b['t2i']['R@1']:.1f}: the heads {verdict} it")
    out.print(f"evaluate it: itr eval emoji:en openclipart --model local:{out_dir}", markup=False)


@train_app.command("lexicon")
def lexicon(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the head (use as --sparse-model local:DIR).")],
    data: DataSpecs = None,
    dense_model: Annotated[str, typer.Option("--dense-model", help="The built-in projector model whose embeddings the head reads.")] = "builtin",
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 30,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")] = 3e-3,
    flops_image: Annotated[float, typer.Option(help="FLOPS sparsity weight, image side.")] = 3e-2,
    flops_text: Annotated[float, typer.Option(help="FLOPS sparsity weight, text side.")] = 1e-1,
    distill: Annotated[float, typer.Option(help="Weight of distilling the dense model's scores (0: off).")] = 1.0,
    doc_terms: Annotated[int, typer.Option(help="Terms kept per indexed image/caption (top-k pruning).")] = 24,
    query_terms: Annotated[int, typer.Option(help="Terms kept per query.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    vocabulary: Annotated[str, typer.Option(help="Terms the head may use: all (every content word, names "
                                            "included: the shipped builtin-lex-v2) or wordnet (dictionary "
                                            "words and their inflections).")] = "all",
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a sparse lexicon head (LexLIP-style) on the built-in model (defaults reproduce the shipped one)."""
    from ..sparse.head import LexiconConfig
    from ..train.lexicon import LexiconTrainConfig, train_lexicon

    defaults = LexiconTrainConfig()
    config = LexiconTrainConfig(
        data=tuple(data) if data else defaults.data, dense_model=dense_model, epochs=epochs, lr=lr,
        flops_image=flops_image, flops_text=flops_text, distill=distill, seed=seed, vocabulary=vocabulary,
        lexicon=LexiconConfig(doc_terms=doc_terms, query_terms=query_terms))
    metrics = _train_heads(train_lexicon, config, out_dir, quiet, json_out)
    if metrics is None:
        return
    out.print(f"lexicon head written to {out_dir} (best epoch {metrics['best_epoch']}, {metrics['n_terms']} terms)",
              markup=False)
    for name in ("val", "test"):
        for r in metrics[name]:
            out.print(f"  {name:>4} {r['dataset']}: sparse RSUM {r['rsum']:.1f}, terms per image "
                      f"{r['image_nnz']:.1f}, per query {r['text_nnz']:.1f}", markup=False)
    out.print(f"use it: itr index SOURCE --out INDEX --repr both --sparse-model local:{out_dir}", markup=False)


@train_app.command("finetune")
def finetune_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Checkpoint to fine-tune: hf:ORG/NAME or local:PATH.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Pairs: jsonl:PATH (or any dataset spec); its train split.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: best/ (use as local:OUT/best), last/, metrics.json.")],
    val: Annotated[str | None, typer.Option(help="Validation spec (default: the val split of --data, if any).")] = None,
    loss: Annotated[str, typer.Option(help="auto (sigmoid for SigLIP, else InfoNCE), infonce or sigmoid.")] = "auto",
    freeze: Annotated[str, typer.Option(help="none, vision, text, or towers (train projections only).")] = "none",
    lora_rank: Annotated[int, typer.Option(help="> 0: train LoRA adapters of this rank (needs the 'lora' extra).")] = 0,
    epochs: Annotated[int, typer.Option()] = 3,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option()] = 1e-5,
    seed: Annotated[int, typer.Option()] = 0,
    quiet: Quiet = False,
) -> None:
    """Contrastive fine-tuning of a CLIP-family checkpoint; rerun the same command to resume."""
    from ..train.finetune import FinetuneConfig, finetune

    with errors():
        if loss not in ("auto", "infonce", "sigmoid"):
            fail(f"--loss must be auto, infonce or sigmoid (got '{loss}')")
        if freeze not in ("none", "vision", "text", "towers"):
            fail(f"--freeze must be none, vision, text or towers (got '{freeze}')")
        config = FinetuneConfig(model=model, data=data, val=val, loss=loss, freeze=freeze,  # type: ignore[arg-type]
                                lora_rank=lora_rank, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        with progress_bar("training", not quiet) as progress:
            metrics = finetune(config, out_dir, progress=progress,
                               log=None if quiet else (lambda line: err.print(line, markup=False)))
    best = metrics["best_val_rsum"]
    out.print(f"best checkpoint: {out_dir / 'best'}" + (f" (val RSUM {best:.1f})" if best is not None else ""),
              markup=False)
