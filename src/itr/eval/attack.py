"""White-box PGD on the image encoder (``itr eval --perturb pgd[@eps=2,steps=10,step=0.5]``).

Projected gradient descent (Madry et al., 2018) with an L-infinity budget, as the adversarial
papers on CLIP-style retrieval measure it: each image is pushed, within ``eps`` raw pixel levels
(0-255) per channel, away from its own captions (the loss is the cosine between the image's
embedding and the mean of its captions' embeddings), from a seeded random start, ``steps`` signed
gradient steps of ``step`` levels each, projected back into the budget and into the valid pixel
range after every step. Recall is then measured with the attacked image embeddings against the
clean captions. The attack sees the model's own preprocessing output, so ``eps`` is in the pixels
the model reads (after resizing), the usual convention.

Needs an encoder with a torch image path (``embed_pixels_with_grad`` and ``pixel_affine``): the
built-in models, ``local:`` and ``hf:`` checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._utils import ProgressFn
from ..errors import BadImageError, InputError
from ..images import load_image


def check_attackable(encoder: Any) -> None:
    if not hasattr(encoder, "embed_pixels_with_grad"):
        raise InputError(f"--perturb pgd needs a model with a torch image path (builtin, local:, hf:); "
                         f"'{encoder.spec}' has none")
    try:
        encoder.pixel_affine()
    except NotImplementedError as exc:
        raise InputError(f"--perturb pgd: {exc}") from None


def pgd_embeddings(encoder: Any, image_paths: Sequence[str], targets: np.ndarray, *, eps: float, steps: int,
                   step: float, seed: int, batch_size: int = 16, max_pixels: int | None = None,
                   progress: ProgressFn | None = None) -> np.ndarray:
    """Attacked, L2-normalised image embeddings (n, dim); ``targets[i]``: the normalised embedding the
    attack pushes image ``i`` away from. Images are decoded as evaluation decodes them."""
    import torch

    check_attackable(encoder)
    scale, offset = (torch.from_numpy(a.astype(np.float32)).view(1, -1, 1, 1) for a in encoder.pixel_affine())
    lo, hi = offset, 255.0 * scale + offset
    lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    budget, stride = eps * scale.abs(), step * scale.abs()
    generator = torch.Generator().manual_seed(seed)
    out = np.zeros((len(image_paths), encoder.dim), dtype=np.float32)
    for start in range(0, len(image_paths), batch_size):
        paths = image_paths[start : start + batch_size]
        arrays = []
        for p in paths:
            try:
                kwargs = {"max_pixels": max_pixels} if max_pixels else {}
                arrays.append(encoder.preprocess_image(load_image(p, exif_transpose=False, **kwargs)))
            except BadImageError as exc:
                raise InputError(f"--perturb pgd: {exc}") from None
        clean = torch.from_numpy(np.stack(arrays))
        target = torch.from_numpy(np.ascontiguousarray(targets[start : start + len(paths)], dtype=np.float32))
        noise = (torch.rand(clean.shape, generator=generator) * 2 - 1) * budget
        x = torch.max(torch.min(clean + noise, hi), lo)
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            emb = encoder.embed_pixels_with_grad(x)
            loss = (emb * target).sum()  # total cosine with the own captions: the attack lowers it
            (grad,) = torch.autograd.grad(loss, x)
            x = x.detach() - stride * grad.sign()
            x = torch.max(torch.min(x, clean + budget), clean - budget)
            x = torch.max(torch.min(x, hi), lo)
        out[start : start + len(paths)] = encoder.encode_pixels(x.detach().numpy())  # the usual inference path
        if progress:
            progress(min(start + batch_size, len(image_paths)), len(image_paths))
    return out
