"""The training-free sparse baseline of the built-in model: images and texts as weighted WordPiece terms.

Vocabulary: all-MiniLM-L6-v2's WordPiece vocabulary (30,522 entries), so trained lexicon heads
(SPLADE/LexLIP-style, a later step) produce vectors in the same space and the same index serves both.

- Text: its own terms, function words and punctuation dropped, weighted ``log(1 + tf) * idf``. IDF
  comes from a collection (``fit_idf``) or is uniform.
- Image: the terms of the names of its top-k ImageNet classes (EfficientNet-Lite), each weighted by
  the probability of the classes it appears in.

Every score is a sum over shared terms, so a result can say why it matched ("guitar 0.81").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._utils import require
from ..encoders.builtin import BuiltinConseEncoder
from .head import STOPWORDS

_WORD = re.compile(r"^(##)?[^\W_]+$")


class BuiltinLexicalEncoder:
    """Sparse vectors over MiniLM's vocabulary from the built-in model's frozen parts."""

    def __init__(self, base: BuiltinConseEncoder, *, top_k: int = 5) -> None:
        self.base = base
        self.tokenizer = base.vocabulary.tokenizer
        self.vocab = self.tokenizer.convert_ids_to_tokens(list(range(self.tokenizer.vocab_size)))
        self.vocab_size = len(self.vocab)
        self.top_k = top_k
        self._content = np.array([bool(_WORD.match(t)) and t not in STOPWORDS for t in self.vocab])
        self.idf = np.ones(self.vocab_size, dtype=np.float32)
        self._class_terms = self._terms_batch(base.class_names)

    def _terms_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Content-term ids of each text, tokenised in one call (the fast tokenizer batches in Rust)."""
        ids = self.base.vocabulary.tokenize(list(texts), add_special_tokens=False, truncation=True,
                                            max_length=self.base.config.max_text_tokens)["input_ids"]
        return [[i for i in row if self._content[i]] for row in ids]

    def fit_idf(self, texts: Sequence[str]) -> None:
        """IDF ``log(1 + N / df)`` from a collection's texts (terms never seen get the maximum)."""
        df = np.zeros(self.vocab_size, dtype=np.float64)
        for terms in self._terms_batch(texts) if texts else []:
            df[np.unique(terms)] += 1
        n = max(len(texts), 1)
        self.idf = np.log1p(n / np.maximum(df, 1.0)).astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> Any:
        """(n, vocab) CSR float32."""
        rows, cols, vals = [], [], []
        for r, row in enumerate(self._terms_batch(texts) if texts else []):
            terms, counts = np.unique(row, return_counts=True)
            rows += [r] * len(terms)
            cols += terms.tolist()
            vals += (np.log1p(counts) * self.idf[terms]).tolist()
        return self._matrix(rows, cols, vals, len(texts))

    def encode_pixels(self, pixels: np.ndarray) -> Any:
        """(n, vocab) CSR from preprocessed images: class-name terms weighted by class probability."""
        import torch

        rows, cols, vals = [], [], []
        for start in range(0, len(pixels), self.base.image_batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.base.image_batch_size]))
            probs = self.base.image_features(chunk)[1].softmax(-1)
            top = probs.topk(self.top_k, dim=-1)
            for j, (ps, cs) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
                weights: dict[int, float] = {}
                for p, c in zip(ps, cs, strict=True):
                    for t in self._class_terms[c]:
                        weights[t] = weights.get(t, 0.0) + p
                rows += [start + j] * len(weights)
                cols += list(weights)
                vals += list(weights.values())
        return self._matrix(rows, cols, vals, len(pixels))

    def _matrix(self, rows: list[int], cols: list[int], vals: list[float], n: int) -> Any:
        sp = require("scipy.sparse", "sparse", "sparse (lexicon) retrieval")
        m = sp.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(n, self.vocab_size))
        m.sum_duplicates()
        return m

    def explain(self, query: Any, doc: Any, top: int = 5) -> list[tuple[str, float]]:
        """The shared terms of two sparse rows and their contribution to the score, largest first."""
        q, d = query.tocsr(), doc.tocsr()
        shared = np.intersect1d(q.indices, d.indices)
        contrib = [(self.vocab[t].removeprefix("##"), float(q[0, t] * d[0, t])) for t in shared]
        contrib.sort(key=lambda x: -x[1])
        return [(t, round(c, 4)) for t, c in contrib[:top] if not math.isclose(c, 0.0)]
