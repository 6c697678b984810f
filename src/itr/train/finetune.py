"""``itr train finetune``: contrastive fine-tuning of CLIP-family checkpoints on image-caption pairs.

``OUT/best`` is a normal checkpoint (``save_pretrained``) that ``--model local:OUT/best`` loads: the
epoch with the best validation RSUM (epoch 0 = the model before training). ``OUT/last`` holds the latest
epoch with the optimizer and RNG state, so rerunning the same command after an interruption resumes
after the last finished epoch. ``OUT/metrics.json`` has the loss and validation R@K of every epoch.
Runs on a GPU when torch sees one.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._utils import ProgressFn, atomic_write_bytes, require
from ..encoders._quiet import quiet_transformers
from ..encoders.hf import HFEncoder
from ..errors import IncompatibleModelError, InputError
from ..eval.datasets import EvalDataset
from ..eval.runner import evaluate_embeddings, package_versions
from ..images import load_image
from .checkpoint import load_state, recover_folder, replace_folder, save_state
from .data import VAL_SPLIT, load_training_set
from .losses import info_nce, sigmoid_loss

Loss = Literal["auto", "infonce", "sigmoid"]
Freeze = Literal["none", "vision", "text", "towers"]
MIN_PAIRS = 4
_FREEZE_PREFIXES = {"none": (), "vision": ("vision_model.",), "text": ("text_model.",),
                    "towers": ("vision_model.", "text_model.")}


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """A fine-tuning run. ``freeze="towers"`` trains only the projections (and temperature/bias)."""

    model: str
    data: str
    val: str | None = None  # default: the val split of ``data``, when it has one
    loss: Loss = "auto"  # auto: sigmoid for SigLIP-family checkpoints, InfoNCE otherwise
    freeze: Freeze = "none"
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) on the attention projections instead
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.1
    seed: int = 0
    workers: int = 2


def _load_pixels(encoder: HFEncoder, paths: list[str], pool: ThreadPoolExecutor) -> Any:
    import torch

    def prep(p: str) -> np.ndarray:
        return encoder.preprocess_image(load_image(p, draft_size=encoder.draft_size))

    return torch.from_numpy(np.stack(list(pool.map(prep, paths))))


def _embed_dataset(encoder: HFEncoder, ds: EvalDataset, pool: ThreadPoolExecutor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model = encoder.model
    model.eval()
    imgs, txts = [], []
    table = ds.texts()
    with torch.no_grad():
        for i in range(0, len(ds.items), batch):
            px = _load_pixels(encoder, ds.image_paths[i : i + batch], pool).to(_device(model))
            imgs.append(torch.nn.functional.normalize(encoder._embed_pixels(px), dim=-1).float().cpu().numpy())
        for i in range(0, len(table.texts), batch):
            out = encoder._embed_texts(table.texts[i : i + batch])
            txts.append(torch.nn.functional.normalize(out, dim=-1).float().cpu().numpy())
    model.train()
    return np.concatenate(imgs), np.concatenate(txts)


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _validate(encoder: HFEncoder, ds: EvalDataset | None, pool: ThreadPoolExecutor, batch: int) -> dict[str, Any] | None:
    if ds is None:
        return None
    img, txt = _embed_dataset(encoder, ds, pool, batch)
    return evaluate_embeddings(img, txt, ds.texts().image)


def _save_model(encoder: HFEncoder, folder: Path, *, lora: bool) -> None:
    """save_pretrained into a temp folder, then swap it in. LoRA adapters are merged first."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model = encoder.model
    if lora:
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    with quiet_transformers():  # no shard-writing progress bar per epoch
        model.save_pretrained(tmp)
        encoder.tokenizer.save_pretrained(tmp)
        encoder.processor.save_pretrained(tmp)
    replace_folder(tmp, folder)


def finetune(config: FinetuneConfig, out: str | Path, *, progress: ProgressFn | None = None,
             log: Any = None) -> dict[str, Any]:
    """Fine-tune, keeping the best epoch in ``out`` and a resumable state in ``out/last``."""
    torch = require("torch", "hf", "itr train finetune")
    from ..encoders.registry import load_encoder

    out = Path(out)
    last = out / "last"
    recover_folder(last)
    resuming = (last / "trainer_state.json").is_file()
    config_json = json.dumps(asdict(config), sort_keys=True)
    if resuming:
        saved = json.loads((out / "finetune_config.json").read_text())
        if json.dumps(saved, sort_keys=True) != config_json:
            raise InputError(f"{out} holds a run with another configuration; use a new --out, or delete {out}")
        encoder = load_encoder(f"local:{last / 'model'}")
    else:
        encoder = load_encoder(config.model)
    if not isinstance(encoder, HFEncoder):
        raise IncompatibleModelError(f"'{config.model}' is not a transformers checkpoint; fine-tuning needs "
                                     "hf:ORG/NAME or local:PATH (the built-in model trains with itr train projector)")
    train = load_training_set(config.data)
    assert train is not None
    val = (load_training_set(config.val) if config.val else load_training_set(config.data, split=VAL_SPLIT))
    if len(train.items) < MIN_PAIRS:
        raise InputError(f"only {len(train.items)} training image(s) in {config.data}; need at least {MIN_PAIRS}")
    if config.epochs < 1 or config.batch_size < 2:
        raise InputError("epochs must be >= 1 and batch size >= 2")

    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = encoder.model.to(device)
    lora = config.lora_rank > 0
    if lora:  # on resume the adapters were merged into last/model; fresh adapters continue from there
        peft = require("peft", "lora", "LoRA fine-tuning (--lora-rank)")
        targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
        model = peft.get_peft_model(model, peft.LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                                           target_modules=targets, lora_dropout=0.0))
        encoder.model = model
    for name, param in model.named_parameters():
        if any(name.startswith(p) or f".{p}" in name for p in _FREEZE_PREFIXES[config.freeze]):
            param.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError(f"--freeze {config.freeze} leaves nothing to train")
    family = getattr(model.config, "model_type", "")
    loss_kind = config.loss if config.loss != "auto" else ("sigmoid" if family.startswith("siglip") else "infonce")
    scale = getattr(model, "logit_scale", None)
    bias = getattr(model, "logit_bias", None)
    if loss_kind == "sigmoid" and bias is None:
        raise IncompatibleModelError(f"{config.model} has no logit_bias: use --loss infonce")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    table = train.texts()
    order = np.argsort(table.image, kind="stable")
    counts = np.bincount(table.image, minlength=len(train.items))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    batch = min(config.batch_size, len(train.items))
    steps = len(train.items) // batch
    start_epoch, history, best = 1, [], -float("inf")
    if resuming:
        state = load_state(last)
        if not lora:  # LoRA restarts its (small) optimizer state on the merged weights
            optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history, best = state["epoch"] + 1, json.loads(state["history"]), state["best"]
        if log:
            log(f"resuming after epoch {state['epoch']} from {last}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "finetune_config.json", (config_json + "\n").encode())
    model.train()
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="itr-finetune") as pool:
        if not resuming and val is not None:
            before = _validate(encoder, val, pool, batch)
            assert before is not None
            history.append({"epoch": 0, "loss": None, "val": before})
            best = before["rsum"]
            _save_model(encoder, out / "best", lora=lora)
        for epoch in range(start_epoch, config.epochs + 1):
            started, total = time.perf_counter(), 0.0
            perm = rng.permutation(len(train.items))
            for step in range(steps):
                idx = perm[step * batch : (step + 1) * batch]
                caps = order[starts[idx] + (rng.random(len(idx)) * counts[idx]).astype(np.int64)]
                px = _load_pixels(encoder, [train.items[i].image for i in idx], pool).to(device)
                img = torch.nn.functional.normalize(encoder._embed_pixels(px), dim=-1)
                txt = torch.nn.functional.normalize(encoder._embed_texts([table.texts[c] for c in caps]), dim=-1)
                if loss_kind == "sigmoid":
                    loss = sigmoid_loss(img, txt, scale, bias)
                else:
                    loss = info_nce(img, txt, scale if scale is not None else torch.tensor(np.log(1 / 0.07)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
                if progress:
                    progress((epoch - 1) * steps + step + 1, config.epochs * steps)
            report = _validate(encoder, val, pool, batch)
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "val": report,
                            "seconds": time.perf_counter() - started})
            improved = report is None or report["rsum"] > best
            if improved:
                best = report["rsum"] if report else best
                _save_model(encoder, out / "best", lora=lora)
            tmp = out / "last.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            _save_model(encoder, tmp / "model", lora=lora)
            save_state(tmp, {"optimizer": optimizer.state_dict(), "numpy_rng": json.dumps(rng.bit_generator.state),
                             "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": json.dumps(history),
                             "best": best})
            replace_folder(tmp, last)
            if log:
                log(f"epoch {epoch}/{config.epochs}: loss {total / max(steps, 1):.4f}"
                    + (f", val RSUM {report['rsum']:.1f}" if report else "") + (" (best)" if improved and report else ""))
    metrics = {"loss": loss_kind, "epochs": history, "best_val_rsum": best if val is not None else None,
               "n_train_images": len(train.items), "n_val_images": len(val.items) if val else 0,
               "device": str(device), "versions": package_versions()}
    atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
    return metrics
