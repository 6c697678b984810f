"""Evaluation: Recall@K both ways on standard and built-in benchmarks, with speed and size.

``metrics`` holds the pure functions (score matrices or embeddings in, ranks and recalls out);
``datasets`` reads benchmark specs; ``protocols`` names the field's protocols; ``runner`` encodes and
measures; ``uncertainty`` bootstraps intervals and paired tests; ``report`` renders.
"""

from __future__ import annotations

from .datasets import ANY_LANG, CaptionTable, EvalDataset, EvalItem, LoadOptions, load_eval_dataset
from .galleries import GALLERY_KINDS, ExactGallery, FaissGallery, Gallery
from .metrics import (
    i2t_ranks,
    mean_rank_variance,
    ranks_from_embeddings,
    ranks_from_topk,
    recall_at_k,
    rsum,
    summarize,
    t2i_ranks,
)
from .protocols import PROTOCOLS, Protocol, get_protocol
from .report import plot_recall, to_markdown, write_json, write_markdown
from .runner import (
    EncodedDataset,
    EvalOptions,
    add_comparisons,
    compare_reports,
    encode_dataset,
    evaluate_embeddings,
    evaluate_encoded,
    evaluate_scores,
    run_eval,
)
from .uncertainty import confidence_intervals, paired_test

__all__ = [
    "ANY_LANG", "GALLERY_KINDS", "PROTOCOLS", "CaptionTable", "EncodedDataset", "EvalDataset", "EvalItem", "EvalOptions",
    "Protocol", "add_comparisons", "compare_reports", "confidence_intervals", "get_protocol", "paired_test",
    "ExactGallery", "FaissGallery", "Gallery", "LoadOptions", "encode_dataset", "evaluate_embeddings", "evaluate_encoded", "evaluate_scores", "i2t_ranks",
    "load_eval_dataset", "mean_rank_variance", "plot_recall", "ranks_from_embeddings", "ranks_from_topk",
    "recall_at_k", "rsum", "run_eval", "summarize", "t2i_ranks", "to_markdown", "write_json", "write_markdown",
]
