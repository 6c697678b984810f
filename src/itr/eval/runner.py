"""Running an evaluation: encode a dataset with a model, rank, time the search, write a report.

The metrics themselves live in ``metrics`` (pure functions); this module only produces embeddings
and measurements and assembles the report dictionary that ``report`` renders.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

import numpy as np

from .._utils import ProgressFn, display_path
from ..calibration import Calibration
from ..encoders.base import Encoder
from ..encoders.pipeline import encode_image_files
from ..errors import InputError
from ..images import DEFAULT_MAX_PIXELS
from . import metrics, uncertainty
from .datasets import CaptionTable, EvalDataset
from .galleries import ExactGallery, Gallery, check_index_kind, make_gallery, needs_sparse
from .perturb import Perturbation, make_transform, parse_perturbation, wrong_captions_for
from .perturb import describe as describe_perturbation
from .protocols import DEFAULT_PROTOCOL, get_protocol

CURVE_MAX_K = 50


Decode = Literal["reference", "fast"]


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """Knobs of a run. ``skip_missing`` also covers images that exist but cannot be decoded.

    ``decode``: ``reference`` (default) feeds the model's preprocessing what the benchmarks'
    reference loaders feed it: every pixel of a JPEG, no EXIF turn. ``fast`` decodes JPEGs at a
    reduced size as indexing does (several times faster on large photos; figures move slightly).
    ``protocol``: a name in ``protocols.PROTOCOLS`` (the report names it; the caption rule it implies
    is applied when the dataset is loaded). ``ci_resamples``: bootstrap resamples for confidence
    intervals (0: none). ``failures``: the worst queries to report each way (0: none).
    ``perturb``: robustness perturbations (``perturb.parse_perturbation`` specs); the images are
    encoded again under each. ``calibration``: a "no good match" threshold (``eval.calibrate``,
    fitted on another split) to measure on this one. ``rerank_depth``: with a re-ranker passed to
    ``run_eval``, re-score each query's top N (``eval.reranked``, LAVIS's two-matrix protocol).
    """

    batch_size: int = 32
    workers: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    skip_missing: bool = False
    tie: metrics.Tie = "pessimistic"
    seed: int = 0
    latency_queries: int = 200
    latency_k: int = 10
    rank_depth: int = 100
    decode: Decode = "reference"
    protocol: str = DEFAULT_PROTOCOL
    ci_resamples: int = 0
    failures: int = 0
    perturb: tuple[str, ...] = ()
    calibration: Calibration | None = None
    rerank_depth: int = 0


@dataclass(frozen=True)
class EncodedDataset:
    """A dataset with its embeddings: texts in ``dataset.texts()`` order (all languages)."""

    dataset: EvalDataset
    model: dict[str, Any]
    image_emb: np.ndarray
    text_emb: np.ndarray
    image_seconds: float
    text_seconds: float


def encode_dataset(dataset: EvalDataset, encoder: Encoder, options: EvalOptions | None = None, *,
                   progress: ProgressFn | None = None, transform: Any = None,
                   texts_from: EncodedDataset | None = None) -> EncodedDataset:
    """Encode every image and caption. Unreadable images are an error unless ``skip_missing``.

    ``transform``: applied to each decoded image (``perturb.make_transform``). ``texts_from``: reuse
    its text embeddings (same dataset) instead of encoding the captions again.
    """
    options = options or EvalOptions()
    if options.decode not in ("reference", "fast"):
        raise InputError(f"decode must be 'reference' or 'fast', got '{options.decode}'")
    paths = dataset.image_paths
    total = len(paths) + dataset.n_texts()
    done = 0
    chunks: list[np.ndarray] = []
    failed: list[tuple[int, str]] = []
    start = time.perf_counter()
    reference = options.decode == "reference"
    for batch in encode_image_files(encoder, paths, batch_size=options.batch_size, workers=options.workers,
                                    max_pixels=options.max_pixels, draft=not reference,
                                    exif_transpose=not reference, transform=transform):
        chunks.append(batch.embeddings)
        failed.extend(batch.errors)
        done += len(batch.indices) + len(batch.errors)
        if progress:
            progress(done, total)
    image_seconds = time.perf_counter() - start
    image_emb = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    if failed:
        if not options.skip_missing:
            raise InputError(f"{len(failed)} of {len(paths)} images of {dataset.name} could not be read "
                             f"(first: {failed[0][1]}); fix them, or pass --skip-missing to evaluate on the rest")
        dataset = dataset.dropping([i for i, _ in failed], [reason for _, reason in failed])
        if not dataset.items:
            raise InputError(f"no image of {dataset.name} could be read")

    if texts_from is not None:
        if failed:
            raise InputError(f"{len(failed)} images of {dataset.name} could not be read under a perturbation "
                             f"(first: {failed[0][1]})")
        return EncodedDataset(dataset, texts_from.model, image_emb, texts_from.text_emb, image_seconds, 0.0)
    texts = dataset.texts().texts
    text_chunks: list[np.ndarray] = []
    start = time.perf_counter()
    step = 256
    for i in range(0, len(texts), step):
        text_chunks.append(encoder.encode_texts(texts[i : i + step]))
        done += len(texts[i : i + step])
        if progress:
            progress(done, total)
    text_seconds = time.perf_counter() - start
    text_emb = np.concatenate(text_chunks) if text_chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    return EncodedDataset(dataset, encoder.describe(), image_emb, text_emb, image_seconds, text_seconds)


@dataclass(frozen=True)
class DirectionRanks:
    i2t: np.ndarray
    t2i: np.ndarray
    tied_i2t: float | None  # None: the index's own order decided (approximate kinds)
    tied_t2i: float | None
    counts: metrics.RankCounts | None = None  # exact kinds: both tie rules follow from it


def rank_both(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray,
              tie: metrics.Tie = "pessimistic", i2t_images: np.ndarray | None = None) -> DirectionRanks:
    """Ranks both ways under ``tie``, plus the share of queries whose rank the tie rule decided.
    ``i2t_images``: the images that are i2t queries (default: all; the others are distractors)."""
    return _from_counts(metrics.rank_counts_from_embeddings(image_emb, text_emb, text_image, i2t_images=i2t_images),
                        tie)


def _from_counts(counts: metrics.RankCounts, tie: metrics.Tie) -> DirectionRanks:
    i2t, t2i = counts.ranks(tie)
    return DirectionRanks(i2t, t2i, float(100.0 * np.mean(counts.i2t_tied > 0)),
                          float(100.0 * np.mean(counts.t2i_tied > 0)), counts)


def retrieval_metrics(i2t_ranks: np.ndarray, t2i_ranks: np.ndarray) -> dict[str, Any]:
    """``{"i2t": {...}, "t2i": {...}, "rsum"}`` from ranks."""
    i2t, t2i = metrics.summarize(i2t_ranks), metrics.summarize(t2i_ranks)
    return {"i2t": i2t, "t2i": t2i, "rsum": metrics.rsum(i2t, t2i)}


def tie_band(counts: metrics.RankCounts) -> dict[str, Any]:
    """R@K both ways and RSUM under both tie rules: a reference code that breaks ties by its sort
    order lands between them (identical when no query has a tie)."""
    band = {}
    for rule in ("optimistic", "pessimistic"):
        m = retrieval_metrics(*counts.ranks(rule))  # type: ignore[arg-type]
        band[rule] = {d: {k: v for k, v in m[d].items() if k.startswith("R@")} for d in ("i2t", "t2i")}
        band[rule]["rsum"] = m["rsum"]
    return band


def _scores_report(r: DirectionRanks) -> dict[str, Any]:
    out = retrieval_metrics(r.i2t, r.t2i)
    out["tied_queries_percent"] = {"i2t": r.tied_i2t, "t2i": r.tied_t2i}
    if r.counts is not None:
        out["tie_band"] = tie_band(r.counts)
    return out


def evaluate_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, *,
                        tie: metrics.Tie = "pessimistic") -> dict[str, Any]:
    """Recall@K both ways from precomputed (normalised) embeddings: the API for your own encoders.

    Scores are computed deterministically (``metrics.deterministic_scores``) and ties counted exactly.
    """
    return _scores_report(rank_both(image_emb, text_emb, text_image, tie))


def evaluate_scores(scores: np.ndarray, text_image: np.ndarray, *, t2i_scores: np.ndarray | None = None,
                    tie: metrics.Tie = "pessimistic") -> dict[str, Any]:
    """Recall@K both ways from score matrices, compared exactly as given (ties: equal values).

    Args:
        scores: ``(n_images, n_texts)``; ranks both directions unless ``t2i_scores`` is given.
        text_image: index of the image each text describes.
        t2i_scores: ``(n_texts, n_images)``, LAVIS's ``score_matrix_t2i``: text-to-image ranks come
            from it and ``scores`` is then LAVIS's ``score_matrix_i2t`` (the ``lavis`` protocol, for
            re-rankers, which score each direction's own candidates).
    """
    counts = metrics.rank_counts_from_scores(scores, text_image, t2i_scores=t2i_scores)
    return _scores_report(_from_counts(counts, tie))


def _mean_dicts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[Any]) -> float | None:
        return None if any(v is None for v in values) else float(np.mean(values))

    return {key: (_mean_dicts([p[key] for p in parts]) if isinstance(parts[0][key], dict)
                  else mean([p[key] for p in parts])) for key in parts[0]}


def _latency(gallery: Gallery, queries: np.ndarray, options: EvalOptions) -> dict[str, float]:
    rng = np.random.default_rng(options.seed)
    n = min(options.latency_queries, len(queries))
    picks = rng.choice(len(queries), size=n, replace=False)
    for i in picks[: min(10, n)]:  # warm-up: BLAS threads, caches
        gallery.search(queries[i : i + 1], options.latency_k)
    times = np.empty(n)
    for j, i in enumerate(picks):
        t0 = time.perf_counter()
        gallery.search(queries[i : i + 1], options.latency_k)
        times[j] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gallery.search(queries, options.latency_k)
    batch = time.perf_counter() - t0
    return {"p50": float(np.percentile(times, 50) * 1e3), "p99": float(np.percentile(times, 99) * 1e3),
            "queries": n, "batch_qps": float(len(queries) / batch) if batch > 0 else float("inf")}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("itr", "numpy", "torch", "transformers", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    import os

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}


def _rank_gallery(kind: str, images: Gallery, image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray,
                  options: EvalOptions, sparse: Any = None,
                  queries: np.ndarray | None = None) -> tuple[DirectionRanks, int]:
    """Ranks for one language and the bytes of its text gallery. Exact kinds rank everything;
    others are read off their top results (the image gallery is built once, by the caller)."""
    texts = make_gallery(kind, text_emb, modality="text", sparse=sparse)
    if images.exact:
        return rank_both(image_emb, text_emb, text_image, options.tie, queries), texts.nbytes()
    t2i_ids = images.search(text_emb, options.rank_depth)
    i2t_ids = texts.search(image_emb if queries is None else image_emb[queries], options.rank_depth)
    return DirectionRanks(metrics.ranks_from_topk(i2t_ids, text_image, "i2t", query_images=queries),
                          metrics.ranks_from_topk(t2i_ids, text_image, "t2i"), None, None), texts.nbytes()


def _curves(ranks: Sequence[DirectionRanks]) -> dict[str, list[float]]:
    return {d: np.mean([metrics.recall_curve(getattr(r, d), CURVE_MAX_K) for r in ranks], axis=0).round(4).tolist()
            for d in ("i2t", "t2i")}


def evaluate_encoded(encoded: EncodedDataset, *, index_kind: str = "exact",
                     options: EvalOptions | None = None, sparse: Any = None) -> dict[str, Any]:
    """The report of one (dataset, model, index kind): quality, speed, size and provenance.

    ``sparse``: the lexicon encoder paired with the model (for ``sparse`` and ``hybrid`` kinds).
    """
    options = options or EvalOptions()
    ds = encoded.dataset
    table = ds.texts()
    gallery = make_gallery(index_kind, encoded.image_emb, modality="image", sparse=sparse)

    # Distractors (images no caption describes) are in the gallery but are no i2t query.
    queries = ds.query_images if ds.has_distractors else None
    per_lang: dict[str, dict[str, Any]] = {}
    ranks_by_lang: dict[str, DirectionRanks] = {}
    text_bytes = 0
    for lang in ds.languages:
        sel = table.lang == lang
        r, nbytes = _rank_gallery(index_kind, gallery, encoded.image_emb, encoded.text_emb[sel], table.image[sel],
                                  options, sparse, queries)
        text_bytes += nbytes
        ranks_by_lang[lang] = r
        per_lang[lang] = _scores_report(r)
    # Several languages: headline numbers are the mean over languages (each ranks the same images).
    top = per_lang[ds.languages[0]] if len(ds.languages) == 1 else _mean_dicts(list(per_lang.values()))
    n_img, n_txt = len(encoded.image_emb), len(table.texts)
    report: dict[str, Any] = {
        "dataset": ds.name, "split": ds.split, "model": encoded.model["spec"], "index": index_kind,
        "n_images": n_img, "n_texts": n_txt, "n_distractors": 0 if queries is None else n_img - len(queries),
        "i2t": top["i2t"], "t2i": top["t2i"], "rsum": top["rsum"],
        "protocol": get_protocol(options.protocol).name,
        "tie_rule": options.tie if gallery.exact else "index order",
        "tied_queries_percent": top["tied_queries_percent"],
        "encode_seconds": encoded.image_seconds + encoded.text_seconds,
        "image_encode_seconds": encoded.image_seconds, "text_encode_seconds": encoded.text_seconds,
        "images_per_second": n_img / encoded.image_seconds if encoded.image_seconds > 0 else None,
        "texts_per_second": n_txt / encoded.text_seconds if encoded.text_seconds > 0 else None,
        "latency_ms": _latency(gallery, encoded.text_emb, options),
        "index_bytes": gallery.nbytes() + text_bytes,  # image gallery + the text galleries (per language)
        "recall_curve": _curves(list(ranks_by_lang.values())),
        "skipped_images": len(ds.skipped), "skipped": [display_path(s) for s in ds.skipped[:50]],
        "model_fingerprint": encoded.model["fingerprint"], "preprocessing": encoded.model.get("preprocessing"),
        "dataset_source": ds.source, "seed": options.seed, "options": asdict(options),
        "versions": package_versions(), "machine": machine(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if gallery.exact:
        report["tie_band"] = top["tie_band"]
    if options.ci_resamples:
        # Resampled units are the query images: texts point at their position among them.
        position = np.full(n_img, -1, dtype=np.int64)
        position[np.arange(n_img) if queries is None else queries] = np.arange(n_img if queries is None else len(queries))
        languages = [uncertainty.LanguageRanks(ranks_by_lang[lg].i2t, ranks_by_lang[lg].t2i,
                                               position[table.image[table.lang == lg]]) for lg in ds.languages]
        report["ci"] = uncertainty.confidence_intervals(languages, resamples=options.ci_resamples, seed=options.seed)
        # Per-query ranks, so that two saved runs can be compared later (``compare_reports``).
        report["ranks"] = {lg: {"i2t": _rank_list(r.i2t), "t2i": _rank_list(ranks_by_lang[lg].t2i),
                                "text_image": r.text_image.tolist()}
                           for lg, r in zip(ds.languages, languages, strict=True)}
    if options.calibration is not None:
        from .calibrate import no_match_report

        report["no_match"] = no_match_report(options.calibration, encoded.image_emb, encoded.text_emb, table.image)
    if options.failures:
        from .failures import find_failures

        first = table.lang == ds.languages[0]
        report["failures"] = find_failures(encoded.image_emb, encoded.text_emb[first], table.image[first],
                                           [t for t, keep in zip(table.texts, first, strict=True) if keep],
                                           list(ds.image_paths), options.failures)
    if not gallery.exact:
        report["recall10_vs_exact"] = _recall_vs_exact(gallery, encoded.image_emb, encoded.text_emb)
    if ds.multilingual:
        report["languages"] = list(ds.languages)
        report["per_language"] = per_lang
        report["mrv"] = _mrv(ds, ranks_by_lang, table)
    return report


def _rank_list(ranks: np.ndarray) -> list[int | None]:
    """Ranks as JSON: integers, None where the right item was beyond an approximate kind's depth."""
    return [int(r) if np.isfinite(r) else None for r in np.asarray(ranks, dtype=np.float64)]


def _saved_ranks(report: dict[str, Any]) -> list[uncertainty.LanguageRanks]:
    if "ranks" not in report:
        raise InputError(f"run {report.get('model')} on {report.get('dataset')} has no per-query ranks: "
                         "evaluate it with confidence intervals (--ci) to compare it")

    def arr(values: list[int | None]) -> np.ndarray:
        return np.array([np.inf if v is None else v for v in values], dtype=np.float64)

    return [uncertainty.LanguageRanks(arr(r["i2t"]), arr(r["t2i"]), np.asarray(r["text_image"], dtype=np.int64))
            for r in report["ranks"].values()]


def compare_reports(baseline: dict[str, Any], other: dict[str, Any], *,
                    resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of ``other`` against ``baseline`` (two runs of one dataset, with ``ranks``)."""
    if (baseline["dataset"], baseline.get("split")) != (other["dataset"], other.get("split")):
        raise InputError(f"cannot compare runs of different datasets ({baseline['dataset']} and {other['dataset']})")
    try:
        out = uncertainty.paired_test(_saved_ranks(baseline), _saved_ranks(other), resamples=resamples, seed=seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return {"baseline": run_name(baseline), **out}


def run_name(report: dict[str, Any]) -> str:
    """``model`` or ``model · index`` (how tables name a run)."""
    return report["model"] if report.get("index", "exact") == "exact" else f"{report['model']} · {report['index']}"


def add_comparisons(reports: list[dict[str, Any]], *, resamples: int = uncertainty.DEFAULT_RESAMPLES,
                    seed: int = 0) -> None:
    """Each run with ranks gets ``compared_to``: the paired test against the first run of its dataset."""
    first: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in reports:
        if "ranks" not in r:
            continue
        key = (r["dataset"], r.get("split"))
        if key not in first:
            first[key] = r
        else:
            r["compared_to"] = compare_reports(first[key], r, resamples=resamples, seed=seed)


def _headline(encoded: EncodedDataset, tie: metrics.Tie) -> dict[str, Any]:
    """R@K both ways and RSUM on exact scores, the mean over languages as in the report."""
    table = encoded.dataset.texts()
    parts = []
    for lang in encoded.dataset.languages:
        sel = table.lang == lang
        queries = encoded.dataset.query_images if encoded.dataset.has_distractors else None
        r = rank_both(encoded.image_emb, encoded.text_emb[sel], table.image[sel], tie, queries)
        parts.append(retrieval_metrics(r.i2t, r.t2i))
    return parts[0] if len(parts) == 1 else _mean_dicts(parts)


def _own_caption_means(encoded: EncodedDataset) -> np.ndarray:
    """Per image, the normalised mean embedding of its captions (every language): what PGD pushes
    the image away from."""
    table = encoded.dataset.texts()
    sums = np.zeros((len(encoded.image_emb), encoded.text_emb.shape[1]), dtype=np.float64)
    np.add.at(sums, table.image, encoded.text_emb)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def _robustness(encoded: EncodedDataset, encoder: Encoder, perturbations: Sequence[Perturbation],
                options: EvalOptions, progress: ProgressFn | None) -> dict[str, Any]:
    """Per perturbation: the figures on perturbed images (same captions), and the drop from clean."""
    ds = encoded.dataset
    clean = _headline(encoded, options.tie)
    table = ds.texts()
    first = table.lang == ds.languages[0]
    own_caption = {int(i): t for i, t in zip(table.image[first][::-1], np.array(table.texts)[first][::-1], strict=True)}
    wrong = wrong_captions_for([own_caption.get(i, "") for i in range(len(ds.items))], options.seed)
    out: dict[str, Any] = {}
    for p in perturbations:
        if p.kind == "pgd":
            from .attack import pgd_embeddings

            attacked = pgd_embeddings(encoder, list(ds.image_paths), _own_caption_means(encoded), eps=p.params["eps"],
                                      steps=int(p.params["steps"]), step=p.params["step"], seed=options.seed,
                                      max_pixels=options.max_pixels, progress=progress)
            perturbed = EncodedDataset(ds, encoded.model, attacked, encoded.text_emb, 0.0, 0.0)
        else:
            transform = make_transform(p, seed=options.seed, wrong_captions=wrong)
            perturbed = encode_dataset(ds, encoder, options, progress=progress, transform=transform,
                                       texts_from=encoded)
        m = _headline(perturbed, options.tie)
        out[p.spec] = {**describe_perturbation(p), "i2t": m["i2t"], "t2i": m["t2i"], "rsum": m["rsum"],
                       "rsum_drop": clean["rsum"] - m["rsum"], "t2i_r1_drop": clean["t2i"]["R@1"] - m["t2i"]["R@1"],
                       "i2t_r1_drop": clean["i2t"]["R@1"] - m["i2t"]["R@1"]}
    return out


def _recall_vs_exact(gallery: Gallery, images: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Text-to-image recall@k of an approximate kind against exact search: the fraction of the exact
    top k it finds (how much the index loses, apart from the model's own quality)."""
    k = min(k, len(images))
    truth = ExactGallery(images).search(queries, k)
    found = gallery.search(queries, k)
    return round(float(np.mean([len(np.intersect1d(f[f >= 0], t)) / k for f, t in zip(found, truth, strict=True)])), 4)


def _mrv(ds: EvalDataset, ranks: dict[str, DirectionRanks], table: CaptionTable) -> dict[str, float | int | None]:
    """MRV both ways. i2t instances are the images; t2i instances are (image, caption slot) pairs
    present in every language (for emoji, slot 0 is the name, which every language has)."""
    langs = ds.languages
    i2t = np.stack([ranks[lg].i2t for lg in langs])
    keyed: list[dict[tuple[int, int], float]] = []
    for lg in langs:
        sel = table.lang == lg
        keyed.append({(int(i), int(s)): float(r) for i, s, r in
                      zip(table.image[sel], table.slot[sel], ranks[lg].t2i, strict=True)})
    common = sorted(set.intersection(*(set(k) for k in keyed)))
    t2i = np.array([[k[c] for c in common] for k in keyed])
    def mrv(ranks: np.ndarray) -> float | None:
        # Approximate kinds leave ranks beyond their result depth unknown (inf): MRV is then unknown.
        return metrics.mean_rank_variance(ranks) if np.isfinite(ranks).all() else None

    return {"i2t": mrv(i2t), "t2i": mrv(t2i), "t2i_instances": len(common)}


def run_eval(dataset: EvalDataset, encoder: Encoder, *, index_kinds: Sequence[str] = ("exact",),
             options: EvalOptions | None = None, progress: ProgressFn | None = None,
             sparse: Any = None, reranker: Any = None) -> list[dict[str, Any]]:
    """Encode ``dataset`` once with ``encoder`` and report each index kind (``sparse``: the lexicon
    encoder for sparse/hybrid kinds; default: the one shipped for the model)."""
    options = options or EvalOptions()
    if options.rerank_depth and reranker is None:
        raise InputError("rerank_depth needs a re-ranker (--rerank-model)")
    for kind in index_kinds:
        check_index_kind(kind)  # before minutes of encoding
    if sparse is None and any(needs_sparse(k) for k in index_kinds):
        from ..sparse.encoder import default_sparse_spec, load_sparse_encoder

        sparse = load_sparse_encoder(default_sparse_spec(encoder), encoder)
    perturbations = [parse_perturbation(p) for p in options.perturb]  # bad specs fail before encoding
    if any(p.kind == "pgd" for p in perturbations):
        from .attack import check_attackable

        check_attackable(encoder)
    encoded = encode_dataset(dataset, encoder, options, progress=progress)
    reports = [evaluate_encoded(encoded, index_kind=kind, options=options, sparse=sparse) for kind in index_kinds]
    if perturbations:
        robustness = _robustness(encoded, encoder, perturbations, options, progress)
        for r in reports:
            r["perturbations"] = robustness
    if reranker is not None and options.rerank_depth:
        from .reranked import rerank_report

        reranked = rerank_report(encoded, reranker, options.rerank_depth, progress=progress)
        for r in reports:
            r["reranked"] = reranked
    for r, kind in zip(reports, index_kinds, strict=True):
        if needs_sparse(kind) and sparse is not None:
            r["sparse_model"] = sparse.spec
    return reports
