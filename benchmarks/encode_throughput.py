"""Built-in encoder throughput, end to end from image files (decode + preprocess + model).

Two kinds of files, both made from real offline data:
  png:  the emoji dataset's PNGs (about 130 x 130, RGBA), as `itr make-dataset emoji` writes them;
  jpeg: 1024 x 768 JPEGs (quality 90) made by pasting those emoji onto textured backgrounds, a stand-in
        for photos: what matters for speed is the decode size, and draft decoding is exercised.

Usage:
    python benchmarks/encode_throughput.py --data .demo/emoji --n 512 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from itr.encoders import encode_image_files, load_encoder


def make_jpegs(pngs: list[Path], out: Path, n: int, seed: int = 0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = out / f"photo_{i:05d}.jpg"
        if not p.exists():
            noise = nprng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
            bg = Image.fromarray(noise).resize((1024, 768), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
            em = Image.open(rng.choice(pngs)).convert("RGBA").resize((420, 420), Image.Resampling.BICUBIC)
            bg.paste(em, (rng.randint(0, 600), rng.randint(0, 340)), em)
            bg.save(p, quality=90)
        paths.append(p)
    return paths


def run(encoder, paths: list[Path], workers: int | None, repeat: int = 2) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        count = sum(len(b.indices) for b in encode_image_files(encoder, paths, batch_size=32, workers=workers))
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".demo/emoji"), help="folder from itr make-dataset emoji")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    pngs = sorted((args.data / "images").glob("*.png"))
    if not pngs:
        raise SystemExit(f"no PNGs under {args.data}/images; run: itr make-dataset emoji --out {args.data}")
    pngs = (pngs * (args.n // len(pngs) + 1))[: args.n]
    jpegs = make_jpegs(pngs, args.data / "bench-jpeg", args.n)
    encoder = load_encoder(args.model)
    run(encoder, pngs[:32], None, repeat=1)  # warm-up
    results = {"model": args.model, "n": args.n, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "python": platform.python_version(), "rows": []}
    for kind, paths in (("png", pngs), ("jpeg 1024x768", jpegs)):
        for w in args.workers:
            ips = run(encoder, paths, w)
            results["rows"].append({"files": kind, "workers": w, "images_per_second": round(ips, 1)})
            print(f"{kind:>14}  workers={w}  {ips:6.1f} images/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
