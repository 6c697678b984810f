"""The WordNet class prior (``itr.encoders.class_prior``) on the bridge and on the trained heads:
how much it counts, chosen where no model was trained, and what it does on data never used to choose.

Grid: prior weight w, image softmax temperature, the discount per hypernym step (gamma), and how
much a non-first person sense counts. Selection: mean RSUM of ``builtin:conse-v2`` + prior on the
**validation** splits of emoji:en and openclipart, which no bridge is trained on (as the v2 bridge
was chosen). The trained heads (``builtin:proj-v2``) take the same setting with no selection of
their own: their training domains' validation splits must not choose for them. GCompris photos and
drawings, and the test splits, are only the check.

    python benchmarks/class_prior.py --json bench-out/class_prior.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

SELECT_ON = ("emoji:en@val", "openclipart@val")
HELD_OUT = ("gcompris-photos", "gcompris-drawings", "emoji:en@test", "openclipart@test", "tuxpaint@test")


def features(enc: Any, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, ImageNet logits) of a dataset's images, as ``itr eval`` decodes them."""
    import torch

    from itr.images import load_image

    emb, logits = [], []
    for start in range(0, len(ds.items), 16):
        pixels = np.stack([enc.preprocess_image(load_image(it.image, draft_size=enc.draft_size))
                           for it in ds.items[start : start + 16]])
        with torch.inference_mode():
            emb.append(enc.encode_pixels(pixels))
            logits.append(enc.image_features(torch.from_numpy(pixels))[1].float().numpy())
    return np.concatenate(emb), np.concatenate(logits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    args = ap.parse_args()

    from itr._utils import l2_normalize
    from itr.encoders import load_encoder
    from itr.encoders.class_prior import ClassPriorConfig, WordNetClassPrior, image_block, join
    from itr.eval import LoadOptions, load_eval_dataset
    from itr.eval.runner import evaluate_embeddings

    models = {"bridge": load_encoder("builtin:conse-v2"), "heads": load_encoder("builtin:proj-v2")}
    data: dict[str, Any] = {}
    for spec in (*SELECT_ON, *HELD_OUT):
        name, _, split = spec.partition("@")
        ds = load_eval_dataset(name, LoadOptions(split=split or None))
        table = ds.texts()
        texts = list(table.texts)
        per_model = {}
        for key, enc in models.items():
            img, logits = features(enc, ds)
            per_model[key] = (img, logits, enc.encode_texts(texts))
        data[spec] = (texts, np.asarray(table.image), per_model)
        print(f"{spec}: {len(ds.items)} images, {len(texts)} texts", flush=True)

    def score(config: ClassPriorConfig | None, model: str, spec: str, prior: Any) -> dict[str, float]:
        texts, text_image, per_model = data[spec]
        img, logits, txt = per_model[model]
        if config is not None:
            q = prior.distributions(texts)
            img = l2_normalize(join(img, image_block(logits, config), config.weight).numpy())
            txt = l2_normalize(join(txt, np.sqrt(q), config.weight).numpy())
        m = evaluate_embeddings(img, txt, text_image)
        return {"t2i_r1": round(m["t2i"]["R@1"], 1), "rsum": round(m["rsum"], 1)}

    rows = []
    grid = itertools.product((0.1, 0.15, 0.2, 0.25, 0.3), (0.7, 1.0, 1.5), (0.3, 0.6), (0.1, 1.0))
    priors: dict[tuple[float, float], Any] = {}
    for weight, temperature, gamma, person in grid:
        config = ClassPriorConfig(weight=weight, temperature=temperature, gamma=gamma, person_weight=person)
        prior = priors.setdefault((gamma, person), WordNetClassPrior(config))
        row: dict[str, Any] = {"weight": weight, "temperature": temperature, "gamma": gamma, "person_weight": person}
        row.update({spec: score(config, "bridge", spec, prior) for spec in SELECT_ON})
        row["select"] = round(float(np.mean([row[s]["rsum"] for s in SELECT_ON])), 2)
        rows.append(row)
    rows.sort(key=lambda r: -r["select"])
    best = rows[0]
    chosen = ClassPriorConfig(weight=best["weight"], temperature=best["temperature"], gamma=best["gamma"],
                              person_weight=best["person_weight"])
    prior = WordNetClassPrior(chosen)
    table = {}
    for model in ("bridge", "heads"):
        for config, label in ((None, "without"), (chosen, "with")):
            table[f"{model} {label} prior"] = {spec: score(config, model, spec, prior) for spec in (*SELECT_ON, *HELD_OUT)}
    print("chosen:", chosen)
    cols = [*SELECT_ON, *HELD_OUT]
    print("model | " + " | ".join(f"{c} t2i R@1/RSUM" for c in cols))
    for label, row in table.items():
        print(f"{label} | " + " | ".join(f"{row[c]['t2i_r1']}/{row[c]['rsum']}" for c in cols))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"selected_on": SELECT_ON, "held_out": HELD_OUT, "chosen": vars(chosen),
                                               "table": table, "grid": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
