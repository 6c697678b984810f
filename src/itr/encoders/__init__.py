"""Encoders: images and texts into one normalised vector space."""

from __future__ import annotations

from .base import Encoder, TorchEncoder
from .pipeline import EncodedBatch, encode_image_files
from .registry import list_encoders, load_encoder

__all__ = ["EncodedBatch", "Encoder", "TorchEncoder", "encode_image_files", "list_encoders", "load_encoder"]
