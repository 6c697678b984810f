"""Re-ranking: a second stage that reads an image and a text together and re-orders the top results.

A dual encoder scores an image and a text from one vector each; a cross-encoder (an image-text
matching head, as in ALBEF and BLIP) reads them jointly: slower, so it only re-scores the first
stage's top ``depth`` results. ``Reranker`` is the protocol; ``load_reranker`` the registry:

- ``local:PATH`` / ``hf:ORG/NAME``: a transformers checkpoint with an image-text matching head
  (``BlipForImageTextRetrieval``, e.g. ``Salesforce/blip-itm-base-coco``), read from a folder or the
  local Hugging Face cache (never downloaded at run time). Its score is the matching head's
  probability that the pair matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ._utils import require
from .errors import InputError, UnknownNameError


class Reranker(Protocol):
    """Scores (image, text) pairs jointly; higher is a better match."""

    spec: str
    fingerprint: str

    def score_pairs(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        """``images[i]`` with ``texts[i]`` -> (n,) float32 scores."""
        ...


class MatchingHeadReranker:
    """A transformers model with an image-text matching head (BLIP ITM and its kin)."""

    batch_size = 16

    def __init__(self, spec: str, folder: Path) -> None:
        from .encoders._quiet import quiet_transformers
        from .encoders.base import hash_files

        transformers = require("transformers", "hf", f"re-ranker '{spec}'")
        require("torch", "hf", f"re-ranker '{spec}'")
        try:
            with quiet_transformers():
                self.model = transformers.BlipForImageTextRetrieval.from_pretrained(folder, local_files_only=True).eval()
                self.processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot load re-ranker '{spec}' from {folder}: {first}; it must be a checkpoint with "
                             "an image-text matching head (BlipForImageTextRetrieval) and its processor") from None
        self.spec = spec
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        self.fingerprint = hash_files(files, extra={"reranker": "itm"})

    def score_pairs(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        import torch

        if len(images) != len(texts):
            raise ValueError(f"score_pairs needs as many images as texts ({len(images)} != {len(texts)})")
        out = np.empty(len(texts), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                batch = self.processor(images=list(images[s : s + self.batch_size]),
                                       text=list(texts[s : s + self.batch_size]), return_tensors="pt",
                                       padding=True, truncation=True)
                res = self.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                                 attention_mask=batch.get("attention_mask"), use_itm_head=True)
                out[s : s + len(batch["input_ids"])] = res.itm_score.float().softmax(-1)[:, 1].numpy()
        return out


RERANKER_SCHEMES = {"local": "local:PATH (a checkpoint with an image-text matching head, e.g. BLIP ITM)",
                    "hf": "hf:ORG/NAME (from the local Hugging Face cache, e.g. hf:Salesforce/blip-itm-base-coco)"}


def load_reranker(spec: str) -> Any:
    """The re-ranker a spec names; UnknownNameError lists the valid forms."""
    from .encoders.hf import resolve_model_folder

    scheme = spec.partition(":")[0]
    if scheme not in RERANKER_SCHEMES:
        raise UnknownNameError(f"unknown re-ranker '{spec}'; valid forms: {'; '.join(RERANKER_SCHEMES.values())}")
    return MatchingHeadReranker(spec, resolve_model_folder(spec))


def rerank_order(scores: np.ndarray) -> np.ndarray:
    """Positions best first (stable: equal scores keep the first stage's order)."""
    return np.argsort(-np.asarray(scores), kind="stable")
