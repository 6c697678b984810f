"""Projection heads that align the built-in model's frozen encoders (trained by ``itr train projector``).

Image side: an MLP from EfficientNet-Lite's pooled 1280-d features into the 384-d MiniLM space, plus
the training-free ConSE vector scaled by a learned ``alpha`` (a residual: the heads start from the
bridge and learn what it misses). Text side (optional): a residual MLP on the normalised MiniLM
embedding, zero-initialised so it starts as the identity; it is what lets French, German and
Spanish captions land near the English ones, since MiniLM's vocabulary is English.

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
TEXT_DIM = 384  # all-MiniLM-L6-v2


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


def _torch() -> Any:
    return require("torch", "builtin", "the built-in model's projection heads")


def build_heads(config: HeadsConfig) -> Any:
    """A ``torch.nn.Module`` with ``image(pooled, conse)``, ``text(minilm)`` and ``logit_scale``."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class ProjectorHeads(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.image_mlp = nn.Sequential(
                nn.LayerNorm(FEATURE_DIM), nn.Linear(FEATURE_DIM, config.hidden), nn.GELU(),
                nn.Dropout(config.dropout), nn.Linear(config.hidden, TEXT_DIM))
            self.alpha = nn.Parameter(torch.tensor(1.0))
            self.text_mlp = None
            if config.text_head:
                self.text_mlp = nn.Sequential(nn.Linear(TEXT_DIM, config.hidden), nn.GELU(),
                                              nn.Dropout(config.dropout), nn.Linear(config.hidden, TEXT_DIM))
                nn.init.zeros_(self.text_mlp[-1].weight)
                nn.init.zeros_(self.text_mlp[-1].bias)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

        def image(self, pooled: Any, conse: Any) -> Any:
            out = self.image_mlp(pooled)
            if config.residual_conse:
                out = out + self.alpha * conse
            return F.normalize(out, dim=-1)

        def text(self, minilm: Any) -> Any:
            t = F.normalize(minilm, dim=-1)
            return F.normalize(t + self.text_mlp(t), dim=-1) if self.text_mlp is not None else t

    return ProjectorHeads()


def save_projector(folder: Path, heads: Any, config: HeadsConfig, *, trained_with: dict[str, Any] | None = None) -> None:
    """Write ``projector.json`` and ``heads.safetensors`` (float16) atomically into ``folder``."""
    FILES.save(folder, heads, asdict(config), trained_with)


def is_projector_folder(folder: Path) -> bool:
    return FILES.is_folder(folder)


def read_projector_config(folder: Path) -> HeadsConfig:
    return FILES.read_config(folder, HeadsConfig, lambda heads: {  # JSON has lists, the config tuples
        **heads, "conse_templates": tuple(heads.get("conse_templates", ()))})


def load_projector(folder: Path) -> tuple[HeadsConfig, Any]:
    """The heads of a projector folder, in eval mode, float32."""
    config = read_projector_config(folder)
    return config, FILES.fill(build_heads(config), FILES.load_state(folder), folder)
