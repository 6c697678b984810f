"""all-MiniLM-L6-v2 without importing transformers: its WordPiece tokenizer through ``tokenizers``
and its 6-layer BERT encoder as a small torch module loaded from the same ``model.safetensors``.

Why by hand: importing transformers 5 costs about 5 s of CPU here before any model loads (it
imports sympy, scipy.optimize, jinja2, torch.distributed and scans every model folder), more than
torch itself. A text query to the built-in model needs neither: this module brings a cold
``itr search INDEX "text"`` from ~10 s to under 2x ``import torch``
(``benchmarks/cold_cli.py``). The forward pass is the plain BERT encoder (post-LayerNorm, exact
GELU, absolute positions); ``tests/integration/test_minilm.py`` checks tokens and embeddings
against transformers' own BertModel and tokenizer on the same files.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from .._utils import require


class WordPieceTokenizer:
    """The parts of a transformers fast tokenizer ITR uses, over the same ``tokenizer.json``."""

    def __init__(self, folder: Path) -> None:
        tokenizers = require("tokenizers", "builtin", "the built-in model")
        self._tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=False))
        self.pad_token_id = int(self._tok.token_to_id("[PAD]") or 0)
        # Truncation is state on the one Rust tokenizer, and a server's requests and the lexicon's
        # known-word check share it: every call sets and clears it under this lock.
        self._lock = threading.Lock()

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._tok.id_to_token(int(i)) or "[UNK]" for i in ids]

    def __call__(self, texts: list[str], *, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, padding: bool = False, return_tensors: str | None = None) -> dict[str, Any]:
        with self._lock:
            if truncation and max_length:
                self._tok.enable_truncation(max_length)
            try:
                encodings = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
            finally:
                self._tok.no_truncation()
        ids = [e.ids for e in encodings]
        if not padding and return_tensors is None:
            return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}
        width = max((len(i) for i in ids), default=0)
        mask = [[1] * len(i) + [0] * (width - len(i)) for i in ids]
        ids = [i + [self.pad_token_id] * (width - len(i)) for i in ids]
        if return_tensors == "pt":
            import torch

            return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}
        return {"input_ids": ids, "attention_mask": mask}


def _bert_modules(config: dict[str, Any]) -> Any:
    """The BERT encoder as torch modules whose parameter names are the checkpoint's keys."""
    import torch
    from torch import nn

    # Layers with uninitialised tensors that the file fills: torch's own layers spend 0.3 s on a
    # random initialisation, and building them on the meta device imports torch._dynamo (2 s).
    class Linear(nn.Module):
        def __init__(self, d_in: int, d_out: int) -> None:
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.empty(d_out, d_in)), nn.Parameter(torch.empty(d_out))

        def forward(self, x: Any) -> Any:
            return nn.functional.linear(x, self.weight, self.bias)

    class LayerNorm(Linear):
        def __init__(self, d: int, eps: float) -> None:
            nn.Module.__init__(self)
            self.weight, self.bias, self.eps = nn.Parameter(torch.empty(d)), nn.Parameter(torch.empty(d)), eps

        def forward(self, x: Any) -> Any:
            return nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)

    class Embedding(nn.Module):
        def __init__(self, n: int, d: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n, d))

        def forward(self, ids: Any) -> Any:
            return nn.functional.embedding(ids, self.weight)

    hidden, heads, eps = int(config["hidden_size"]), int(config["num_attention_heads"]), float(config["layer_norm_eps"])
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with exact GELU and absolute positions is supported")

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = Embedding(int(config["vocab_size"]), hidden)
            self.position_embeddings = Embedding(int(config["max_position_embeddings"]), hidden)
            self.token_type_embeddings = Embedding(int(config["type_vocab_size"]), hidden)
            self.LayerNorm = LayerNorm(hidden, eps=eps)

        def forward(self, ids: Any) -> Any:
            positions = torch.arange(ids.shape[1], device=ids.device)
            x = self.word_embeddings(ids) + self.position_embeddings(positions)[None] + self.token_type_embeddings.weight[0]
            return self.LayerNorm(x)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = Linear(hidden, hidden), Linear(hidden, hidden), Linear(hidden, hidden)

        def forward(self, x: Any, bias: Any) -> Any:
            n, t, _ = x.shape

            def split(proj: Any) -> Any:
                return proj(x).view(n, t, heads, hidden // heads).transpose(1, 2)

            out = nn.functional.scaled_dot_product_attention(split(self.query), split(self.key), split(self.value),
                                                             attn_mask=bias)
            return out.transpose(1, 2).reshape(n, t, hidden)

    class DenseNorm(nn.Module):  # "output" blocks: dense, dropout (identity at inference), residual, LayerNorm
        def __init__(self, d_in: int) -> None:
            super().__init__()
            self.dense = Linear(d_in, hidden)
            self.LayerNorm = LayerNorm(hidden, eps=eps)

        def forward(self, x: Any, residual: Any) -> Any:
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(hidden)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = Linear(hidden, int(config["intermediate_size"]))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseNorm(int(config["intermediate_size"]))

        def forward(self, x: Any, bias: Any) -> Any:
            x = self.attention.output(self.attention.self(x, bias), x)
            return self.output(nn.functional.gelu(self.intermediate.dense(x)), x)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(int(config["num_hidden_layers"])))

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            x = self.embeddings(input_ids)
            # Padding is masked with the dtype's minimum as an additive bias, as transformers does.
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            for layer in self.encoder.layer:
                x = layer(x, bias)
            return x

    return Bert()


def load_bert(folder: Path) -> Any:
    """The BERT encoder of ``folder`` (config.json + model.safetensors), in eval mode."""
    safetensors_torch = require("safetensors.torch", "builtin", "the built-in model")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    import torch

    with torch.inference_mode(False):  # normal tensors, even when first loaded inside inference mode
        model = _bert_modules(config)
        state = safetensors_torch.load_file(str(folder / "model.safetensors"))
    wanted = set(model.state_dict())
    missing = wanted - set(state)
    if missing:
        raise ValueError(f"{folder / 'model.safetensors'}: missing {sorted(missing)[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, assign=True)
    return model.eval().requires_grad_(False)
