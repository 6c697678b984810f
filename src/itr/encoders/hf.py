"""CLIP-family checkpoints through ``transformers``: CLIP, SigLIP, and any model exposing
``get_image_features`` / ``get_text_features``.

Differences between families are data in FAMILIES, not forked classes. Image preprocessing is the one
the checkpoint's own ``preprocessor_config.json`` describes, run by transformers' image processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from .._utils import require
from ..errors import InputError
from ._quiet import quiet_transformers
from .base import TorchEncoder, center_square, hash_files


@dataclass(frozen=True, kw_only=True)
class FamilyConfig:
    """How a model family expects its text input."""

    # SigLIP was trained on texts padded to the full context (64 tokens); shorter padding changes
    # its embeddings. CLIP uses causal attention with EOS pooling, so padding to the longest is exact.
    text_padding: Literal["longest", "max_length"] = "longest"


FAMILIES: dict[str, FamilyConfig] = {
    "clip": FamilyConfig(text_padding="longest"),
    "siglip": FamilyConfig(text_padding="max_length"),
    "siglip2": FamilyConfig(text_padding="max_length"),
}
DEFAULT_FAMILY = FamilyConfig()


def _features(out: Any) -> Any:
    """transformers >= 5 returns a ModelOutput from get_*_features; earlier versions a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


class HFEncoder(TorchEncoder):
    """A transformers dual encoder loaded from a folder (or the local hub cache)."""

    def __init__(self, spec: str, folder: Path) -> None:
        super().__init__(spec)
        transformers = require("transformers", "hf", f"model '{spec}'")
        require("torch", "hf", f"model '{spec}'")
        try:
            with quiet_transformers():
                self.model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
                self.processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"cannot load model '{spec}' from {folder}: {first}; the folder must hold a checkpoint "
                "saved with save_pretrained (config.json, weights, tokenizer, preprocessor_config.json)"
            ) from exc
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(self.model, method):
                raise InputError(f"model '{spec}' ({type(self.model).__name__}) has no {method}(); "
                                 "ITR needs a dual encoder such as CLIP or SigLIP")
        model_type = getattr(self.model.config, "model_type", "")
        self.family = FAMILIES.get(model_type, DEFAULT_FAMILY)
        self.max_text_tokens = self._context_length()
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        self._fingerprint = hash_files(files, extra={"family": model_type, "max_tokens": self.max_text_tokens},
                                       sample_bytes=4 << 20)
        import torch

        with torch.inference_mode():  # the output size, whatever the family calls it in its config
            self._dim = int(self._embed_texts(["a"]).shape[-1])
        size = self._input_size()
        self._draft = (size, size)
        cfg = self.processor.to_dict()
        # "Shortest edge to S, then centre crop" keeps only the centre square of the image, so the
        # square is cut out first: the processor would otherwise upscale a W x 1 image to (S*W) x S
        # pixels (gigabytes) before cropping. Processors that resize to a fixed size need no cut.
        self._square_first = bool(cfg.get("do_center_crop")) and "shortest_edge" in (cfg.get("size") or {})

    def _context_length(self) -> int:
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        limits = [getattr(text_cfg, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        usable = [int(n) for n in limits if isinstance(n, int) and 0 < n < 100_000]
        return min(usable) if usable else 77

    def _input_size(self) -> int:
        cfg = self.processor.to_dict()
        for key in ("crop_size", "size"):
            val = cfg.get(key)
            if isinstance(val, dict):
                nums = [v for k, v in val.items() if k in ("height", "width", "shortest_edge")]
                if nums:
                    return int(min(nums))
            elif isinstance(val, int):
                return val
        return 224

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def draft_size(self) -> tuple[int, int]:
        return self._draft

    def preprocessing(self) -> dict[str, Any]:
        cfg = self.processor.to_dict()
        keep = ("size", "crop_size", "resample", "image_mean", "image_std", "do_center_crop", "do_resize")
        return {"image_processor": type(self.processor).__name__, **{k: cfg[k] for k in keep if k in cfg},
                "text_max_tokens": self.max_text_tokens, "text_padding": self.family.text_padding}

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        if self._square_first and image.width != image.height:
            image = image.crop(center_square(image.size))
        # Channels last, said explicitly: transformers otherwise guesses from the shape, and takes a
        # 1 x 1 or 3 x W image for channels-first.
        out = self.processor(images=[image], return_tensors="np", input_data_format="channels_last")
        return np.asarray(out["pixel_values"][0], dtype=np.float32)

    def _embed_pixels(self, pixels: Any) -> Any:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def pixel_affine(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.processor.to_dict()
        mean = np.array(cfg.get("image_mean") or [0.0, 0.0, 0.0], dtype=np.float32)
        std = np.array(cfg.get("image_std") or [1.0, 1.0, 1.0], dtype=np.float32)
        rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        if not cfg.get("do_normalize", True):
            mean, std = np.zeros(3, dtype=np.float32), np.ones(3, dtype=np.float32)
        return rescale / std, -mean / std

    def _embed_texts(self, texts: list[str]) -> Any:
        batch = self.tokenizer(texts, padding=self.family.text_padding, truncation=True,
                               max_length=self.max_text_tokens, return_tensors="pt")
        args = {"input_ids": batch["input_ids"]}
        if "attention_mask" in batch and self.family.text_padding == "longest":
            args["attention_mask"] = batch["attention_mask"]
        return _features(self.model.get_text_features(**args))


def local_model_folder(rest: str) -> Path:
    """The folder ``local:REST`` names, refused with the fix when it is not one."""
    path = Path(rest).expanduser()
    if not rest or not path.is_dir():
        raise InputError(f"model folder not found: {rest} (local:PATH must be a folder saved with save_pretrained)")
    return path


def resolve_model_folder(spec: str) -> Path:
    """The folder of ``local:PATH`` or ``hf:ORG/NAME`` (the hub cache, downloading on first use)."""
    scheme, _, rest = spec.partition(":")
    if not rest:
        raise InputError(f"model '{spec}' needs a name: hf:ORG/NAME or local:PATH")
    if scheme == "local":
        return local_model_folder(rest).resolve()
    from .hub import resolve_hub_model

    return resolve_hub_model(spec, rest)


def load_hf(spec: str) -> HFEncoder:
    return HFEncoder(spec, resolve_model_folder(spec))
