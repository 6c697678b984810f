"""Sparse encoders: dense embeddings -> weighted vocabulary terms, and their registry.

A sparse encoder is paired with a dense one: it reads the dense embeddings the index computes anyway
(so no model runs twice) and returns a CSR matrix over the vocabulary. Names:

- ``builtin`` — the lexicon head shipped for the built-in model it is paired with
  (``encoders/weights/builtin-lex-v2`` for ``builtin`` v2, ``builtin-lex-v1`` for ``builtin:proj-v1``);
- ``local:DIR`` — a head written by ``itr train lexicon``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .._utils import require
from ..encoders.base import Encoder, hash_files
from ..errors import IncompatibleModelError, InputError, UnknownNameError
from .head import CONFIG_FILE, WEIGHTS_FILE, LexiconConfig, is_lexicon_folder, load_head, read_config
from .index import DEFAULT_LEVELS

Modality = Literal["image", "text"]
_WEIGHTS = Path(__file__).resolve().parent.parent / "encoders" / "weights"
PACKAGED_LEXICONS = (_WEIGHTS / "builtin-lex-v2", _WEIGHTS / "builtin-lex-multi-v1", _WEIGHTS / "builtin-lex-v1")
PACKAGED_LEXICON = PACKAGED_LEXICONS[0]
"""The head ``builtin`` names for the default built-in model; each shipped head records the dense
model it reads, and ``builtin`` picks the one that matches."""
SPARSE_SPECS = ("builtin", "local:PATH")


class SparseEncoder(Protocol):
    """Sparse term weights from the paired dense encoder's embeddings."""

    spec: str
    fingerprint: str
    vocab: list[str]
    doc_terms: int
    query_terms: int

    @property
    def vocab_size(self) -> int: ...

    @property
    def scale(self) -> float:
        """Weight per quantisation step for indexes (fixed, so segments and compaction agree)."""
        ...

    def encode(self, dense: np.ndarray, modality: Modality, *, max_terms: int | None = None,
               allowed: np.ndarray | None = None) -> Any:
        """(n, dim) dense embeddings -> (n, vocab) float32 CSR, each row cut to ``max_terms``.

        ``allowed``: bool mask over the vocabulary; only those terms may be kept (a query against an
        index: the terms it has postings for, so no query slot goes to a term no document has)."""
        ...

    def known_terms(self, texts: Sequence[str]) -> np.ndarray:
        """How many of each query text's own words the lexicon knows (0: search treats the query as
        having no terms, whatever the encoder would expand it into)."""
        ...

    def describe(self) -> dict[str, Any]: ...


class LexiconEncoder:
    """A trained lexicon head (``itr.sparse.head``) on a built-in projector model."""

    def __init__(self, spec: str, folder: Path, dense: Encoder) -> None:
        text = getattr(dense, "vocabulary", None)
        if text is None:
            raise IncompatibleModelError(f"lexicon heads read the built-in model's embeddings; '{dense.spec}' has none "
                                         "(sparse search needs --model builtin or a projector from itr train projector)")
        self.config: LexiconConfig
        self.config, self.head = load_head(folder, text.model.embeddings.word_embeddings.weight)
        # A head reads the dense model's vectors, or, on a model with the WordNet class prior joined on
        # (builtin = proj-v3), their dense part: heads are trained on it, and v2's heads pair with v3.
        self._dense_view = None
        base_dim = getattr(dense, "base_dim", dense.dim)
        if self.config.dim == base_dim != dense.dim:
            self._dense_view = dense.base_vectors
        if self.config.dense_fingerprint and self.config.dense_fingerprint not in (
                dense.fingerprint, getattr(dense, "base_fingerprint", dense.fingerprint)):
            raise IncompatibleModelError(
                f"{folder}: this lexicon head was trained on dense model {self.config.dense_fingerprint}, "
                f"not '{dense.spec}' ({dense.fingerprint}); retrain it with itr train lexicon")
        self.spec = spec
        self.folder = folder
        self.vocab = text.tokenizer.convert_ids_to_tokens(list(range(text.tokenizer.vocab_size)))
        if len(self.vocab) != self.config.vocab_size:
            raise IncompatibleModelError(f"{folder}: head vocabulary {self.config.vocab_size} != tokenizer {len(self.vocab)}")
        self._text = text
        self._fold: dict[str, tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]] = {}
        self._fold_within: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._known = np.zeros(len(self.vocab), dtype=bool)
        self._known[self.head.terms.numpy()] = True
        self.fingerprint = hash_files([folder / WEIGHTS_FILE, folder / CONFIG_FILE], extra=dense.fingerprint)
        self.doc_terms = self.config.doc_terms
        self.query_terms = self.config.query_terms

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def scale(self) -> float:
        return self.config.max_weight / DEFAULT_LEVELS

    def _folded(self, modality: Modality) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]:
        """The head as affine maps per modality, ``logits = (h @ P + p) @ A + c``, float32.

        ``g * (E (W h + b_lin)) + b`` folds into ``A = (g * E).T`` (word dim x terms), ``c = b``, and
        the projection ``P = W.T``, ``p = b_lin``; when the dense model is no wider than the word space
        the projection folds in too (``A = (g * (E W)).T``, ``c = g * (E b_lin) + b``, ``P`` None). A
        query costs one pass over ``A``, ~21k terms x 384 floats, and reading it is the cost (~1 ms on
        one core here): a 768-d model keeps the projection apart rather than read a matrix twice as big."""
        if modality not in self._fold:
            import torch

            with torch.no_grad():
                lin = self.head.proj[modality]
                g = self.head.gain[:, None]
                if lin.weight.shape[1] > lin.weight.shape[0]:
                    fold = (np.ascontiguousarray(lin.weight.numpy().T, dtype=np.float32),
                            lin.bias.numpy().astype(np.float32),
                            np.ascontiguousarray((g * self.head.vocab).numpy().T, dtype=np.float32),
                            self.head.bias.numpy().astype(np.float32))
                else:
                    a = g * (self.head.vocab @ lin.weight)
                    c = self.head.gain * (self.head.vocab @ lin.bias) + self.head.bias
                    fold = (None, None, np.ascontiguousarray(a.numpy().T, dtype=np.float32),
                            c.numpy().astype(np.float32))
            self._fold[modality] = fold
        return self._fold[modality]

    def _logits(self, dense: np.ndarray, modality: Modality,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(terms, logits)``: the head's logits over its terms that ``allowed`` keeps (all when None)."""
        p, b, _, _ = self._folded(modality)
        terms, a, c = self._restricted(modality, allowed)
        if p is not None:
            dense = dense @ p + b
        return terms, dense @ a + c

    def _restricted(self, modality: Modality, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(terms, A, c) of the head's columns whose term ``allowed`` keeps (all when None).

        Why: reading A is the cost of a query's encoding, and an index of photos has postings for a
        fraction of the 21k terms (4.8k at 1M images of the benchmark), so a query against it reads
        a quarter of A. The slice is kept per modality for the last mask seen (an index's mask
        changes only when a segment is added)."""
        _, _, a, c = self._folded(modality)
        terms = self.head.terms.numpy()
        if allowed is None:
            return terms, a, c
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (self.vocab_size,):
            raise ValueError(f"allowed must be a bool mask over the {self.vocab_size}-term vocabulary")
        hit = self._fold_within.get(modality)
        # an index hands over the same mask object on every query: the identity check is the usual path
        if hit is None or (hit[0] is not allowed and not np.array_equal(hit[0], allowed)):
            cols = np.flatnonzero(allowed[terms])
            hit = (allowed, terms[cols], np.ascontiguousarray(a[:, cols]), c[cols])
            self._fold_within[modality] = hit
        return hit[1], hit[2], hit[3]

    def encode(self, dense: np.ndarray, modality: Modality, *, max_terms: int | None = None,
               allowed: np.ndarray | None = None) -> Any:
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', not {modality!r}")
        sp = require("scipy.sparse", "sparse", "sparse (lexicon) retrieval")
        dense = np.atleast_2d(np.asarray(dense, dtype=np.float32))
        if self._dense_view is not None:
            dense = self._dense_view(dense)
        n_terms = len(self._restricted(modality, allowed)[0])
        if not n_terms:
            return sp.csr_matrix((len(dense), self.vocab_size), dtype=np.float32)
        k = min(max_terms or n_terms, n_terms)
        parts = []
        for start in range(0, len(dense), 1024):
            terms, logits = self._logits(dense[start : start + 1024], modality, allowed)
            # log1p(relu(.)) is monotonic: select on the logits, transform only what is kept
            top = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < logits.shape[1] else \
                np.broadcast_to(np.arange(logits.shape[1]), logits.shape)
            sel = np.take_along_axis(logits, top, axis=1).ravel()
            keep = sel > 0
            rows = np.repeat(np.arange(len(top)), top.shape[1])[keep]
            cols = terms[top.ravel()[keep]]
            order = np.lexsort((cols, rows))  # CSR directly (row-major, sorted terms): no COO round trip
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(top)))])
            parts.append(sp.csr_matrix((np.log1p(sel[keep][order]).astype(np.float32), cols[order], indptr),
                                       shape=(len(top), self.vocab_size)))
        if not parts:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        return sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]

    def known_terms(self, texts: Sequence[str]) -> np.ndarray:
        """How many of each text's own words are lexicon terms. The head expands any input, but an
        expansion of a query with no known word (a typo, another script) is noise: search treats
        such a query as having no terms."""
        ids = self._text.tokenize(list(texts), add_special_tokens=False, truncation=True, max_length=256)["input_ids"]
        return np.array([int(self._known[row].sum()) if row else 0 for row in ids], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "fingerprint": self.fingerprint, "vocab_size": self.vocab_size,
                "doc_terms": self.doc_terms, "query_terms": self.query_terms, "scale": self.scale}


def load_sparse_encoder(spec: str, dense: Encoder) -> SparseEncoder:
    """A sparse encoder by name, paired with ``dense``.

    Raises:
        UnknownNameError: unknown name (lists the valid ones).
        IncompatibleModelError: the head was trained on another dense model.
    """
    spec = spec.strip()
    if spec == "builtin":
        # The shipped head trained on this dense model, else one trained on it without its class prior
        for fingerprint in (dense.fingerprint, getattr(dense, "base_fingerprint", None)):
            for folder in PACKAGED_LEXICONS:
                if is_lexicon_folder(folder) and read_config(folder).dense_fingerprint == fingerprint:
                    return LexiconEncoder(spec, folder, dense)
        return LexiconEncoder(spec, PACKAGED_LEXICON, dense)  # raises, naming the mismatch
    return LexiconEncoder(spec, _lexicon_folder(spec), dense)


def _lexicon_folder(spec: str) -> Path:
    """The head folder of ``local:DIR`` (checked), for any name other than ``builtin``."""
    if spec.startswith("local:"):
        folder = Path(spec[len("local:"):]).expanduser()
        if not is_lexicon_folder(folder):
            raise InputError(f"{folder}: not a lexicon head folder (no {CONFIG_FILE}); train one with itr train lexicon")
        return folder.resolve()
    raise UnknownNameError(f"unknown sparse encoder '{spec}'; valid: {', '.join(SPARSE_SPECS)}")


# The dense models a shipped lexicon head was trained on.
MODELS_WITH_LEXICON = ("builtin", "builtin:proj", "builtin:proj-v3", "builtin:proj-v2", "builtin:multi", "builtin:proj-v1")


def default_sparse_spec(dense: Encoder | str) -> str:
    """The sparse encoder an index gets when none is named: the shipped head for the built-in model."""
    spec = dense if isinstance(dense, str) else dense.spec
    if spec.strip() in MODELS_WITH_LEXICON:
        return "builtin"
    raise InputError(f"no lexicon head ships for model '{spec}'; name one with --sparse-model local:DIR "
                     "(itr train lexicon), or use dense vectors only (itr index --repr dense; itr eval --index exact)")


def check_sparse_pairing(dense_spec: str, sparse_spec: str | None) -> None:
    """Whether ``sparse_spec`` (None: the default) can pair with ``dense_spec``, from the names and
    folders alone: what ``itr eval`` checks for every model before minutes of encoding.

    Raises:
        InputError / UnknownNameError: no head for that model, or not a head folder.
    """
    spec = (sparse_spec or default_sparse_spec(dense_spec)).strip()
    if spec != "builtin":
        _lexicon_folder(spec)


def explain_terms(vocab: Sequence[str], terms: np.ndarray, query_weights: np.ndarray, doc_weights: np.ndarray,
                  top: int = 5) -> list[tuple[str, float]]:
    """The matched terms of one hit and their share of its score (query weight x stored weight), largest first."""
    contrib = query_weights * doc_weights
    order = np.argsort(-contrib, kind="stable")
    return [(vocab[int(terms[i])].removeprefix("##"), round(float(contrib[i]), 4)) for i in order[:top]
            if not math.isclose(float(contrib[i]), 0.0)]

