"""Training: projection heads for the built-in model, and fine-tuning of CLIP-family checkpoints.

Configs are frozen dataclasses; every run writes its config and metrics next to its weights.
``finetune()`` is imported from ``itr.train.finetune`` (re-exporting it here would shadow the
submodule of the same name).
"""

from __future__ import annotations

from .data import load_training_set
from .finetune import FinetuneConfig
from .losses import info_nce, sigmoid_loss
from .projector import ProjectorTrainConfig, train_projector

__all__ = ["FinetuneConfig", "ProjectorTrainConfig", "info_nce", "load_training_set", "sigmoid_loss", "train_projector"]
