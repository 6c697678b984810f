"""The classifier's own knowledge as photo-free training pairs (issue 16, step 2): does it help the
built-in heads on real photos? Measured: no (BENCHMARKS.md, "builtin = builtin:multi").

EfficientNet's final layer holds one 1280-d vector ``w_c`` per ImageNet class, learned from real
photos. Each class becomes one synthetic training "image": pooled features ``mu + beta * (w_c -
mean w) / |.|`` (``mu``: the training images' mean pooled feature; ``beta`` set so that the class
gets ``--p`` of the softmax on average; clamped at swish's minimum), its logits through the same
layer, paired with the class's USE-m CuPL embedding (the bridge's class table). They are added to
the v2 recipe's three sources (captions in en, fr, de, es), with USE-m as the text model; the
gate's prototypes stay real training images only.

    python benchmarks/classifier_pairs.py --p 0.5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from itr.encoders.builtin import CONSE_MULTI_CLASSES, BuiltinConseEncoder, bridge_config
from itr.eval import load_eval_dataset
from itr.train import projector as P
from itr.train.features import split_image_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=float, default=0.5, help="mean softmax probability of the class")
    args = ap.parse_args()
    torch.set_num_threads(2)
    defaults = P.ProjectorTrainConfig()  # the v2 recipe's data (en, fr, de, es), on USE-m
    config = replace(defaults, heads=replace(defaults.heads, text_model="use-m"))
    hc = config.heads
    base = BuiltinConseEncoder("builtin:conse", bridge_config(hc))
    train = P.load_parts(base, config.data, "train", None)
    train, _ = P.drop_near_duplicates(train, P.evaluation_image_paths(config.data, config.held_out), 6)
    val = P.load_parts(base, config.data, "val", None)
    fc = base.image_model._fc
    w, b = fc.weight.detach().float(), fc.bias.detach().float()
    pooled_all = torch.cat([split_image_features(p.images)[0] for p in train])
    mu = pooled_all.mean(0)
    d = w - w.mean(0)
    d = d / d.norm(dim=1, keepdim=True)
    diag = torch.arange(1000)

    def mean_p(beta: float) -> float:
        return float((((mu + beta * d) @ w.T + b).softmax(-1))[diag, diag].mean())

    lo, hi = 0.0, 200.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_p(mid) < args.p else (lo, mid)
    x = (mu + (lo + hi) / 2 * d).clamp(min=-0.2785)
    logits = x @ w.T + b
    classes = torch.from_numpy(np.load(CONSE_MULTI_CLASSES))
    synth = P.FeaturePart(replace(train[0].dataset, name="imagenet-classes"), torch.cat([x, logits], 1), classes,
                          np.arange(1000))
    started = time.perf_counter()
    parts = train + [synth]
    sel = P.choose_gate(hc, base, parts, val, config)
    heads, best, _ = P._fit(replace(hc, gate=tuple(sel["gate"])), base, parts, val, config)
    heads.set_prototypes(pooled_all, torch.Generator().manual_seed(config.seed))
    print(f"gate {sel['gate']}, best epoch {best}, {time.perf_counter() - started:.0f} s")
    for p in P.load_parts(base, config.data, "test", None):
        print("test", p.dataset.name, round(P._report(heads, base, p)["rsum"], 1))
    for s in ("gcompris-photos", "gcompris-drawings"):
        r = P._report(heads, base, P.feature_part(base, load_eval_dataset(s), None))
        print("held out", s, f"t2i R@1 {r['t2i']['R@1']:.1f}, RSUM {r['rsum']:.1f}")


if __name__ == "__main__":
    main()
