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

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._utils import require
from ..encoders.head_files import HeadFiles
from ..errors import IncompatibleModelError

LEXICON_FORMAT = "itr-lexicon"
LEXICON_VERSION = 1
CONFIG_FILE = "lexicon.json"
WEIGHTS_FILE = "lexicon.safetensors"
FILES = HeadFiles(WEIGHTS_FILE, CONFIG_FILE, LEXICON_FORMAT, LEXICON_VERSION, key="lexicon", what="lexicon head")
MODALITIES = ("image", "text")

# Function words of the supported caption languages (English, French, German, Spanish), and markup
# left in captions ("amp" of "&amp;"): present in almost every caption, they carry no content. Only
# words of 3+ letters are terms at all: 2-letter WordPiece entries are mostly fragments ("ge", "fe").
STOPWORDS = frozenset("""a an the of and or in on at to for with by from as is are be this that these those it its
into over under up down out off near her his their our your my some any no not amp nbsp quot was has have
les des une aux par pour sur avec dans est sont qui que del las los una por con para sin que the der die das
den dem des ein eine einer eines und oder mit von auf aus bei für ist sind""".split())
_CONTENT_WORD = re.compile(r"^[^\W\d_]{3,}$")


# Regular inflections of a dictionary word ("jars", "boxes", "berries", "women", "painted", "running"):
# (ending, what replaces it), tried in turn.
_INFLECTIONS = (("s", ""), ("es", ""), ("ies", "y"), ("men", "man"), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"))


def content_terms(vocab: list[str], words: frozenset[str] | None = None) -> np.ndarray:
    """Ids of the vocabulary entries a lexicon may use: whole words of 3+ letters, not stopwords,
    and, given a dictionary ``words``, only words in it or regular inflections of them (WordPiece's
    vocabulary also holds names and fragments: "gregg", "ind", "isbn")."""
    def in_dictionary(t: str) -> bool:
        return words is None or t in words or any(
            t.endswith(end) and t[: -len(end)] + base in words for end, base in _INFLECTIONS)

    return np.array([i for i, t in enumerate(vocab) if _CONTENT_WORD.match(t) and t not in STOPWORDS
                     and in_dictionary(t)], dtype=np.int64)


def dictionary_words() -> frozenset[str]:
    """English WordNet's one-word lemmas of every part of speech, and its irregular inflections
    (shipped with the class prior's table; WordNet 3.0 licence)."""
    from ..encoders.class_prior import WORDNET_CLASSES

    return frozenset((WORDNET_CLASSES / "words.txt").read_text(encoding="utf-8").split())


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
            word_dim = e.shape[1]
            self.proj = nn.ModuleDict({m: nn.Linear(config.dim, word_dim) for m in MODALITIES})
            with torch.no_grad():  # the identity, tiled over a wider dense model's blocks ([bridge ; heads])
                eye = torch.eye(word_dim)
                for lin in self.proj.values():
                    lin.weight.copy_(eye.repeat(1, -(-config.dim // word_dim))[:, : config.dim])
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
    FILES.save(folder, head, asdict(config), trained_with)


def is_lexicon_folder(folder: Path) -> bool:
    return FILES.is_folder(folder)


def read_config(folder: Path) -> LexiconConfig:
    return FILES.read_config(folder, LexiconConfig)


def load_head(folder: Path, embeddings: Any) -> tuple[LexiconConfig, Any]:
    """The head of a lexicon folder, in eval mode, float32."""
    config = read_config(folder)
    state = FILES.load_state(folder)
    if "terms" not in state:
        raise IncompatibleModelError(f"{folder / WEIGHTS_FILE}: no term ids; retrain the head")
    return config, FILES.fill(build_head(config, embeddings, state["terms"].numpy()), state, folder)
