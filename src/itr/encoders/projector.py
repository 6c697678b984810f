"""Projection heads that align the built-in model's frozen encoders (trained by ``itr train projector``).

Image side: an MLP from EfficientNet-Lite's pooled 1280-d features into the 384-d MiniLM space, plus
the training-free ConSE vector scaled by a learned ``alpha`` (a residual: the heads start from the
bridge and learn what it misses). Text side (optional): a residual MLP on the normalised MiniLM
embedding, zero-initialised so it starts as the identity; it is what lets French, German and
Spanish captions land near the English ones, since MiniLM's vocabulary is English.

Since v2 (``bridge="v2"``, ``gate`` set) the heads also know **where they were trained**: they keep
``gate_prototypes`` of their training images' (centred, normalised) pooled features, and an image's
closeness ``s`` (mean cosine to its ``gate_neighbours`` nearest prototypes) sets how much of the
heads it gets: ``g = sigmoid((s - c) / tau)``. The embedding is the concatenation
``[sqrt(1 - g) * bridge ; sqrt(g) * heads]`` (unit norm, 768-d), the text's ``[minilm ; text head]
/ sqrt(2)``: far from the training images (real photos, for heads trained on clip art and cut-outs)
an image is scored by the training-free bridge, near them by the heads. ``benchmarks/heads_gate.py``
measured why (every head alone loses to the bridge on photos) and ``itr train projector`` chooses
``c`` and ``tau`` on leave-one-source-out validation.

A trained projector is a folder: ``projector.json`` (architecture + the base model's settings) and
``heads.safetensors`` (float16; computed in float32). ``--model local:FOLDER`` loads it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._utils import require
from .head_files import HeadFiles

PROJECTOR_FORMAT = "itr-projector"
PROJECTOR_VERSION = 1
CONFIG_FILE = "projector.json"
WEIGHTS_FILE = "heads.safetensors"
FILES = HeadFiles(WEIGHTS_FILE, CONFIG_FILE, PROJECTOR_FORMAT, PROJECTOR_VERSION, key="heads", what="projector")
FEATURE_DIM = 1280  # EfficientNet-Lite0/1/2 pooled features
TEXT_DIMS = {"minilm": 384, "use-m": 512}  # all-MiniLM-L6-v2; multilingual Universal Sentence Encoder v3


@dataclass(frozen=True, kw_only=True)
class HeadsConfig:
    """Architecture of the heads (what a checkpoint needs to be rebuilt)."""

    hidden: int = 1024
    dropout: float = 0.2
    residual_conse: bool = True
    text_head: bool = True
    init_temperature: float = 0.07
    backbone: str = "efficientnet-lite0"
    conse_top_k: int = 5
    conse_templates: tuple[str, ...] = ("a photo of a {}.", "a drawing of a {}.")
    # "v1": class-name templates, top ``conse_top_k``; "v2": builtin:conse's CuPL classes, top 20, T 2
    bridge: str = "v1"
    gate: tuple[float, float] | None = None  # (c, tau) of the closeness gate; None: heads only, 384-d
    gate_prototypes: int = 1024
    gate_neighbours: int = 5
    # The frozen text encoder the heads read and whose space the bridge's class texts are in:
    # "minilm" (English) or "use-m" (16 languages, builtin:conse-multi's space).
    text_model: str = "minilm"

    @property
    def text_dim(self) -> int:
        if self.text_model not in TEXT_DIMS:
            raise ValueError(f"unknown text model '{self.text_model}' in projector config ({', '.join(TEXT_DIMS)})")
        return TEXT_DIMS[self.text_model]

    @property
    def dim(self) -> int:
        return 2 * self.text_dim if self.gate is not None else self.text_dim


def _torch() -> Any:
    return require("torch", "builtin", "the built-in model's projection heads")


def build_heads(config: HeadsConfig) -> Any:
    """A ``torch.nn.Module`` with ``image(pooled, conse)``, ``text(raw)`` (the frozen text encoder's
    embedding) and ``logit_scale``."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    text_dim = config.text_dim

    class ProjectorHeads(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.image_mlp = nn.Sequential(
                nn.LayerNorm(FEATURE_DIM), nn.Linear(FEATURE_DIM, config.hidden), nn.GELU(),
                nn.Dropout(config.dropout), nn.Linear(config.hidden, text_dim))
            self.alpha = nn.Parameter(torch.tensor(1.0))
            self.text_mlp = None
            if config.text_head:
                self.text_mlp = nn.Sequential(nn.Linear(text_dim, config.hidden), nn.GELU(),
                                              nn.Dropout(config.dropout), nn.Linear(config.hidden, text_dim))
                nn.init.zeros_(self.text_mlp[-1].weight)
                nn.init.zeros_(self.text_mlp[-1].bias)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
            if config.gate is not None:  # filled by the trainer (set_prototypes); saved with the weights
                self.register_buffer("proto_mean", torch.zeros(FEATURE_DIM))
                self.register_buffer("prototypes", torch.zeros(config.gate_prototypes, FEATURE_DIM))

        def set_prototypes(self, pooled: Any, generator: Any) -> None:
            """Keep ``gate_prototypes`` of these training features, drawn with ``generator``."""
            unit = F.normalize(pooled, dim=-1)
            centre = unit.mean(0)
            pick = torch.randperm(len(unit), generator=generator)[: config.gate_prototypes]
            self.proto_mean.copy_(centre)
            self.prototypes.zero_()
            self.prototypes[: len(pick)] = F.normalize(unit[pick] - centre, dim=-1)

        def gate_weight(self, pooled: Any, c: float | None = None, tau: float | None = None) -> Any:
            """(n, 1) share of the heads in each image's embedding."""
            c0, tau0 = config.gate if config.gate is not None else (0.0, 1.0)
            x = F.normalize(F.normalize(pooled, dim=-1) - self.proto_mean, dim=-1)
            k = min(config.gate_neighbours, len(self.prototypes))
            closeness = (x @ self.prototypes.T).topk(k, dim=-1).values.mean(-1, keepdim=True)
            return torch.sigmoid((closeness - (c0 if c is None else c)) / (tau0 if tau is None else tau))

        def embed_image(self, pooled: Any, conse: Any, gate: tuple[float, float] | None = None) -> Any:
            """The model's image embedding: the heads' alone, or gated with the bridge (see module doc)."""
            heads = self.image(pooled, conse)
            if config.gate is None:
                return heads
            g = self.gate_weight(pooled, *(gate or config.gate))
            return torch.cat([(1 - g).sqrt() * F.normalize(conse, dim=-1), g.sqrt() * heads], dim=-1)

        def embed_text(self, minilm: Any) -> Any:
            heads = self.text(minilm)
            if config.gate is None:
                return heads
            return torch.cat([F.normalize(minilm, dim=-1), heads], dim=-1) / math.sqrt(2.0)

        def image(self, pooled: Any, conse: Any) -> Any:
            out = self.image_mlp(pooled)
            if config.residual_conse:
                out = out + self.alpha * conse
            return F.normalize(out, dim=-1)

        def text(self, raw: Any) -> Any:
            t = F.normalize(raw, dim=-1)
            return F.normalize(t + self.text_mlp(t), dim=-1) if self.text_mlp is not None else t

    return ProjectorHeads()


def save_projector(folder: Path, heads: Any, config: HeadsConfig, *, trained_with: dict[str, Any] | None = None) -> None:
    """Write ``projector.json`` and ``heads.safetensors`` (float16) atomically into ``folder``."""
    FILES.save(folder, heads, asdict(config), trained_with)


def is_projector_folder(folder: Path) -> bool:
    return FILES.is_folder(folder)


def read_projector_config(folder: Path) -> HeadsConfig:
    return FILES.read_config(folder, HeadsConfig, lambda heads: {  # JSON has lists, the config tuples
        **heads, "conse_templates": tuple(heads.get("conse_templates", ())),
        **({"gate": tuple(heads["gate"])} if heads.get("gate") is not None else {})})


def load_projector(folder: Path) -> tuple[HeadsConfig, Any]:
    """The heads of a projector folder, in eval mode, float32."""
    config = read_projector_config(folder)
    return config, FILES.fill(build_heads(config), FILES.load_state(folder), folder)
