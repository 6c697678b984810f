"""Training: projection heads for the built-in model (and, next, sparse heads and fine-tuning).

Configs are frozen dataclasses; every run writes its config and metrics next to its weights.
"""

from __future__ import annotations

from .data import load_training_set
from .finetune import FinetuneConfig, finetune
from .losses import info_nce, sigmoid_loss
from .projector import ProjectorTrainConfig, train_projector

__all__ = ["FinetuneConfig", "ProjectorTrainConfig", "finetune", "info_nce", "load_training_set", "sigmoid_loss", "train_projector"]
