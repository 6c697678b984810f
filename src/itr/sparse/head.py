"""The trained lexicon head (LexLIP/SPLADE-style): dense embeddings -> weighted vocabulary terms.

For an L2-normalised dense embedding ``h`` of modality ``m`` (image or text, from the dense model the
head was trained on), the weight of vocabulary term ``t`` is::

    w_t = log(1 + ReLU(g_t * <E_t, W_m h> + b_t))

``E`` is MiniLM's WordPiece input-embedding matrix, frozen (so the head starts from what each word
means to the text model and ships as ~0.4 M parameters, not 12 M); ``W_m`` (per modality), the
per-term gain ``g`` and bias ``b`` are trained (``itr train lexicon``). Only content terms are
scored: whole alphabetic words, no stopwords, so every weight can be shown to a person ("guitar
0.81"). The log saturates large weights, the ReLU and the FLOPS regulariser in training make most
weights exactly zero, and index-time top-k pruning bounds the rest.

A head is a folder: ``lexicon.json`` (settings, the dense model it reads) and
``lexicon.safetensors`` (float16 weights; computed in float32).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import atomic_write_bytes, require
from ..errors import IncompatibleModelError, InputError

LEXICON_FORMAT = "itr-lexicon"
LEXICON_VERSION = 1
CONFIG_FILE = "lexicon.json"
WEIGHTS_FILE = "lexicon.safetensors"
MODALITIES = ("image", "text")

# English function words: present in almost every caption and class name, they carry no content.
STOPWORDS = frozenset("""a an the of and or in on at to for with by from as is are be this that these those it its
into over under up down out off near her his their our your my some any no not""".split())
_CONTENT_WORD = re.compile(r"^[^\W\d_]{2,}$")


def content_terms(vocab: list[str]) -> np.ndarray:
    """Ids of the vocabulary entries a lexicon may use: whole words of 2+ letters, not stopwords."""
    return np.array([i for i, t in enumerate(vocab) if _CONTENT_WORD.match(t) and t not in STOPWORDS], dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class LexiconConfig:
    """A head's settings; ``doc_terms``/``query_terms`` are the pruning defaults of indexes and queries."""

    dim: int = 384
    vocab_size: int = 30522
    doc_terms: int = 24
    query_terms: int = 16
    dense_fingerprint: str = ""  # the dense model whose embeddings the head reads
    max_weight: float = 8.0  # indexes quantise weights in steps of max_weight / 255 (larger ones clip)


def _torch() -> Any:
    return require("torch", "builtin", "the lexicon head")


def build_head(config: LexiconConfig, embeddings: Any, terms: np.ndarray) -> Any:
    """A ``torch.nn.Module``: ``weights(dense, modality)`` -> (n, len(terms)) non-negative weights.

    ``embeddings`` is the (vocab_size, dim) word-embedding matrix; only the rows of ``terms`` are kept.
    """
    torch = _torch()
    nn = torch.nn

    class LexiconHead(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            rows = torch.as_tensor(np.asarray(terms), dtype=torch.long)
            e = embeddings.detach().float()[rows]
            # unit rows: the gain g_t, not the embedding norm, decides how easily a term fires
            self.register_buffer("vocab", e / e.norm(dim=1, keepdim=True).clamp(min=1e-6), persistent=False)
            self.register_buffer("terms", rows.clone())
            self.proj = nn.ModuleDict({m: nn.Linear(config.dim, config.dim) for m in MODALITIES})
            for lin in self.proj.values():
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)
            self.gain = nn.Parameter(torch.full((len(rows),), 4.0))
            self.bias = nn.Parameter(torch.full((len(rows),), -1.0))

        def logits(self, dense: Any, modality: str) -> Any:
            return self.gain * (self.proj[modality](dense) @ self.vocab.T) + self.bias

        def weights(self, dense: Any, modality: str) -> Any:
            return torch.log1p(torch.relu(self.logits(dense, modality)))

    return LexiconHead()


def save_head(folder: Path, head: Any, config: LexiconConfig, *, trained_with: dict[str, Any] | None = None) -> None:
    """Write ``lexicon.safetensors`` (float16, term ids int64) and ``lexicon.json`` atomically."""
    torch = _torch()
    st = require("safetensors.torch", "builtin", "saving a lexicon head")
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in head.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / WEIGHTS_FILE, st.save(state))
    meta = {"format": LEXICON_FORMAT, "format_version": LEXICON_VERSION, "lexicon": asdict(config),
            "trained_with": trained_with or {}}
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def is_lexicon_folder(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file()


def read_config(folder: Path) -> LexiconConfig:
    path = folder / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read lexicon head config ({exc})") from None
    if meta.get("format") != LEXICON_FORMAT or meta.get("format_version") != LEXICON_VERSION:
        raise IncompatibleModelError(f"{path}: not an ITR lexicon head v{LEXICON_VERSION} "
                                     f"(format {meta.get('format')!r} v{meta.get('format_version')}); retrain it")
    try:
        return LexiconConfig(**meta["lexicon"])
    except TypeError as exc:
        raise IncompatibleModelError(f"{path}: unexpected lexicon settings ({exc})") from None


def load_head(folder: Path, embeddings: Any) -> tuple[LexiconConfig, Any]:
    """The head of a lexicon folder, in eval mode, float32."""
    config = read_config(folder)
    st = require("safetensors.torch", "builtin", "loading a lexicon head")
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise InputError(f"{folder}: missing {WEIGHTS_FILE}")
    state = st.load_file(str(path))
    if "terms" not in state:
        raise IncompatibleModelError(f"{path}: no term ids; retrain the head")
    head = build_head(config, embeddings, state["terms"].numpy())
    try:
        head.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise IncompatibleModelError(f"{path}: weights do not match {CONFIG_FILE} ({str(exc).splitlines()[0]})") from None
    return config, head.eval()
