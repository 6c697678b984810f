"""Contrastive losses shared by every trainer (projectors, sparse heads, fine-tuning)."""

from __future__ import annotations

from typing import Any


def info_nce(image: Any, text: Any, logit_scale: Any, *, max_scale: float = 100.0) -> Any:
    """Symmetric InfoNCE (CLIP): row i of ``image`` matches row i of ``text``; the rest are negatives.

    Args:
        image, text: (B, D) L2-normalised embeddings.
        logit_scale: log of the inverse temperature (learnable); clamped at ``max_scale`` as in CLIP
            so the softmax cannot collapse to one-hot early in training.
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale.exp().clamp(max=max_scale) * image @ text.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def sigmoid_loss(image: Any, text: Any, logit_scale: Any, logit_bias: Any) -> Any:
    """SigLIP's pairwise sigmoid loss: each (image, text) pair is its own binary problem.

    Unlike InfoNCE it needs no softmax over the batch, so it behaves at small batch sizes; it is the
    loss SigLIP checkpoints were trained with.
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale.exp() * image @ text.T + logit_bias
    labels = 2 * torch.eye(len(image), device=image.device) - 1  # +1 on the diagonal, -1 elsewhere
    return -F.logsigmoid(labels * logits).sum() / len(image)
