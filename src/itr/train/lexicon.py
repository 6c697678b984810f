"""``itr train lexicon``: train the sparse lexicon head on the built-in model's dense embeddings.

Recipe (LexLIP, ICCV 2023, and D2S, ECIR 2024, at toy scale): the dense model (the shipped
projector) stays frozen and its embeddings of the offline training splits are computed once from
the feature cache. Each step pairs every image of the batch with one random caption; the loss is

- symmetric InfoNCE over the *sparse* dot products (image terms . text terms),
- plus a distillation term, KL(dense scores || sparse scores) both ways, so the sparse ranking
  follows the dense model's (whose scores also fix a sensible temperature),
- plus a grounding term (LexLIP's lexicon objective, simplified): the softmax over the vocabulary
  of both the image's and the caption's logits should put its mass on the caption's own words, so
  terms mean what they say ("apple" fires for apples) instead of becoming arbitrary code words,
- plus the FLOPS regulariser sum_t mean_b(w_bt)^2 per modality, ramped in quadratically over the
  first third of training (SPLADE's warm-up): it pushes rarely useful terms to exactly zero, which
  keeps postings short and queries cheap.

Validation ranks the val split with pruned vectors (``doc_terms`` per image, ``query_terms`` per
text), i.e. as an index would serve them; the epoch with the best mean val RSUM is kept.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import ProgressFn, atomic_write_bytes
from ..encoders.builtin import BuiltinProjectorEncoder, load_builtin
from ..errors import InputError
from ..eval.runner import evaluate_scores, package_versions
from ..sparse.head import LexiconConfig, build_head, content_terms, dictionary_words, save_head
from .data import TRAIN_SPLIT, VAL_SPLIT
from .features import split_image_features
from .projector import MIN_TRAIN_IMAGES, CaptionSampler, FeaturePart, load_parts


@dataclass(frozen=True, kw_only=True)
class LexiconTrainConfig:
    """Everything that determines a lexicon-head run (written as ``train_config.json``)."""

    data: tuple[str, ...] = ("emoji:en,fr,de,es", "openclipart", "tuxpaint:en,fr,de,es")
    dense_model: str = "builtin"
    lexicon: LexiconConfig = field(default_factory=LexiconConfig)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    flops_image: float = 3e-2
    flops_text: float = 1e-1
    distill: float = 1.0
    ground: float = 0.5
    warmup_fraction: float = 0.33
    seed: int = 0
    threads: int = 2
    # "all": every content word of MiniLM's vocabulary, names included (builtin-lex-v2, shipped);
    # "wordnet": dictionary words only (English WordNet, any part of speech, and their inflections):
    # cleaner terms, but lower sparse RSUM in-domain (BENCHMARKS.md, "Lexicon head: dictionary terms").
    vocabulary: str = "all"


VOCABULARIES = ("wordnet", "all")


def dense_embeddings(encoder: BuiltinProjectorEncoder, part: FeaturePart) -> tuple[Any, Any]:
    import torch

    with torch.no_grad():
        pooled, logits = split_image_features(part.images)
        return encoder.heads.embed_image(pooled, encoder.conse_vectors(logits)), encoder.heads.embed_text(part.texts)


def prune_top(w: Any, k: int) -> Any:
    """Zero all but each row's ``k`` largest weights (torch)."""
    import torch

    if k >= w.shape[1]:
        return w
    top = w.topk(k, dim=1)
    return torch.zeros_like(w).scatter_(1, top.indices, top.values)


def _val_report(head: Any, dense: tuple[Any, Any], part: FeaturePart, config: LexiconConfig) -> dict[str, Any]:
    import torch

    head.eval()
    with torch.no_grad():
        img = prune_top(head.weights(dense[0], "image"), config.doc_terms)
        txt = prune_top(head.weights(dense[1], "text"), config.query_terms)
        scores = (img @ txt.T).numpy()
    head.train()
    r = evaluate_scores(scores, part.text_image)
    return {"dataset": part.dataset.name, "split": part.dataset.split, "rsum": r["rsum"], "i2t": r["i2t"],
            "t2i": r["t2i"], "image_nnz": float((img > 0).sum(1).float().mean()),
            "text_nnz": float((txt > 0).sum(1).float().mean())}


def _caption_terms(encoder: BuiltinProjectorEncoder, texts: list[str], terms: np.ndarray, vocab_size: int) -> Any:
    """(n_texts, n_terms) CSR: each caption's own lexicon words, weights summing to 1 (empty rows
    for captions with none, e.g. in another language)."""
    from scipy import sparse as sp

    column = np.full(vocab_size, -1, dtype=np.int64)
    column[terms] = np.arange(len(terms))
    ids = encoder.vocabulary.tokenize(texts, add_special_tokens=False, truncation=True, max_length=64)["input_ids"]
    rows, cols = [], []
    for r, row in enumerate(ids):
        found = np.unique(column[row]) if row else np.zeros(0, np.int64)
        found = found[found >= 0]
        rows += [r] * len(found)
        cols += found.tolist()
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(terms)))
    sums = np.asarray(m.sum(1)).ravel()
    return sp.diags(1.0 / np.maximum(sums, 1.0)).astype(np.float32) @ m


def train_lexicon(config: LexiconTrainConfig, out: str | Path, *, progress: ProgressFn | None = None,
                  log: Any = None) -> dict[str, Any]:
    """Train a lexicon head, write it to ``out`` (``lexicon.json`` + ``lexicon.safetensors`` +
    ``train_config.json`` + ``metrics.json``), return the run's metrics."""
    import torch
    import torch.nn.functional as F

    if config.epochs < 1 or config.batch_size < 2:
        raise InputError("epochs must be >= 1 and batch size >= 2")
    if config.vocabulary not in VOCABULARIES:
        raise InputError(f"unknown lexicon vocabulary '{config.vocabulary}'; valid: {', '.join(VOCABULARIES)}")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    encoder = load_builtin(config.dense_model)
    if not isinstance(encoder, BuiltinProjectorEncoder):
        raise InputError(f"a lexicon head trains on a projector model's embeddings; '{config.dense_model}' is not one")
    started = time.perf_counter()

    train_parts = load_parts(encoder, config.data, TRAIN_SPLIT, progress)
    val_parts = load_parts(encoder, config.data, VAL_SPLIT, progress)
    n_images = sum(len(p.images) for p in train_parts)
    if n_images < MIN_TRAIN_IMAGES:
        raise InputError(f"only {n_images} training image(s) in {', '.join(config.data)}; need at least {MIN_TRAIN_IMAGES}")
    dense_train = [dense_embeddings(encoder, p) for p in train_parts]
    dense_val = [dense_embeddings(encoder, p) for p in val_parts]
    images = torch.cat([d[0] for d in dense_train])
    texts = torch.cat([d[1] for d in dense_train])
    sampler = CaptionSampler(train_parts)
    teacher_scale = float(encoder.heads.logit_scale.detach().exp().clamp(max=100.0))
    feature_seconds = time.perf_counter() - started

    words = encoder.vocabulary
    vocab = words.tokenizer.convert_ids_to_tokens(list(range(words.tokenizer.vocab_size)))
    # The head reads the heads' vectors (dense_embeddings), without any WordNet class prior joined on:
    # its input is base_dim wide, and it reads the dense part of a prior model's vectors.
    lex = LexiconConfig(**{**asdict(config.lexicon), "vocab_size": len(vocab),
                           "dense_fingerprint": encoder.fingerprint, "dim": encoder.base_dim})
    allowed = dictionary_words() if config.vocabulary == "wordnet" else None
    head = build_head(lex, words.model.embeddings.word_embeddings.weight, content_terms(vocab, allowed))
    head.train()
    caption_terms = _caption_terms(encoder, [t for p in train_parts for t in p.dataset.texts().texts],
                                   head.terms.numpy(), len(vocab))
    batch = min(config.batch_size, n_images)
    steps_per_epoch = max(1, n_images // batch)
    total_steps = config.epochs * steps_per_epoch
    warm_steps = max(1, int(config.warmup_fraction * total_steps))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.1)
    labels = torch.arange(batch)
    curve: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    step_no = 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        perm = rng.permutation(n_images)
        totals = np.zeros(3)
        for step in range(steps_per_epoch):
            idx = perm[step * batch : (step + 1) * batch]
            pick = sampler.pick(idx, rng)
            wi, wt = head.weights(images[idx], "image"), head.weights(texts[pick], "text")
            s = wi @ wt.T
            contrastive = (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels)) / 2
            with torch.no_grad():
                teacher = teacher_scale * images[idx] @ texts[pick].T
            distill = (F.kl_div(F.log_softmax(s, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
                       + F.kl_div(F.log_softmax(s.T, 1), F.log_softmax(teacher.T, 1), log_target=True,
                                  reduction="batchmean")) / 2
            ramp = min(1.0, (step_no / warm_steps)) ** 2
            flops = config.flops_image * (wi.mean(0) ** 2).sum() + config.flops_text * (wt.mean(0) ** 2).sum()
            ground = torch.zeros(())
            if config.ground > 0:
                target = torch.from_numpy(caption_terms[pick].toarray())
                has = target.sum(1) > 0
                if has.any():
                    li, lt = head.logits(images[idx], "image"), head.logits(texts[pick], "text")
                    ground = -((target * (F.log_softmax(li, 1) + F.log_softmax(lt, 1))).sum(1)[has]).mean() / 2
            loss = contrastive + config.distill * distill + ramp * flops + config.ground * ground
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step_no += 1
            totals += (contrastive.item(), distill.item(), flops.item())
        val = [_val_report(head, d, p, lex) for d, p in zip(dense_val, val_parts, strict=True)]
        score = float(np.mean([v["rsum"] for v in val])) if val else -float(epoch)
        totals /= steps_per_epoch
        curve.append({"epoch": epoch, "contrastive": totals[0], "distill": totals[1], "flops": totals[2],
                      "val_rsum": score if val else None,
                      "val_image_nnz": float(np.mean([v["image_nnz"] for v in val])) if val else None,
                      "val_text_nnz": float(np.mean([v["text_nnz"] for v in val])) if val else None})
        # keep the best epoch once the regulariser is fully on: earlier ones are not yet sparse
        if step_no >= warm_steps and (best is None or score > best[0]):
            best = (score, epoch, copy.deepcopy(head.state_dict()))
        if log:
            c = curve[-1]
            log(f"epoch {epoch}/{config.epochs}: loss {totals[0]:.3f}+{totals[1]:.3f}+{totals[2]:.3f}"
                + (f", val RSUM {score:.1f}, nnz image {c['val_image_nnz']:.1f} text {c['val_text_nnz']:.1f}"
                   if val else ""))
    if best is None:
        best = (curve[-1]["val_rsum"] or 0.0, config.epochs, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    train_seconds = time.perf_counter() - started
    with torch.no_grad():  # the quantisation range indexes use: the largest weight seen, plus headroom
        top = max(float(head.weights(images, "image").max()), float(head.weights(texts, "text").max()))
    lex = LexiconConfig(**{**asdict(lex), "max_weight": round(1.25 * top, 3)})

    out = Path(out)
    save_head(out, head, lex, trained_with={"data": list(config.data), "dense_model": config.dense_model,
                                           "seed": config.seed, "best_epoch": best[1]})
    test_parts = load_parts(encoder, config.data, "test", progress)
    metrics = {
        "best_epoch": best[1], "curve": curve, "n_train_images": n_images, "n_train_texts": len(texts),
        "n_terms": len(head.terms), "feature_seconds": feature_seconds, "train_seconds": train_seconds,
        "val": [_val_report(head, d, p, lex) for d, p in zip(dense_val, val_parts, strict=True)],
        "test": [_val_report(head, dense_embeddings(encoder, p), p, lex) for p in test_parts],
        "versions": package_versions(), "machine": platform.platform(),
    }
    config_json = json.dumps(asdict(config), indent=2, sort_keys=True, default=list) + "\n"
    atomic_write_bytes(out / "train_config.json", config_json.encode())
    atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
    return metrics
