"""Encoding throughput of ``itr index --engine ray`` against the in-process path, same machine.

Both build a fresh index of the same items with the built-in model: the emoji set (real PNG files)
repeated ``--repeat`` times under new ids. Times are end to end, as ``itr index`` and ``itr index
--engine ray`` run: loading the model in this process, the build, and for Ray starting a local Ray
(as the job does when no ``--ray-address`` is given), the actors loading their models, the pipeline
and the merge. Overhead = ray time / in-process time - 1.

The machine's speed drifts (a shared VM: the same in-process build varied by 1.5x over an hour), so
each round runs every configuration back to back and the overhead is taken within a round; the
report gives each round's and the median.

Usage:
    python benchmarks/ray_encode.py --data .demo/emoji --repeat 4 --rounds 2 --json bench-out/ray_encode.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from itr.collection import scan_source
from itr.encoders import load_encoder
from itr.eval.runner import package_versions
from itr.index import BuildOptions, build_index
from itr.index.distributed import RayOptions, build_index_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".demo/emoji"), help="folder of itr make-dataset emoji")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=RayOptions().shard_size)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="itr-ray-bench-"))
    lines = [json.loads(x) for x in (args.data / "emoji-en.jsonl").read_text().splitlines()]
    with open(work / "items.jsonl", "w", encoding="utf-8") as fh:
        for r in range(args.repeat):
            for x in lines:
                x = {**x, "id": f"{x['id']}-{r}", "image": str((args.data / x["image"]).resolve())}
                fh.write(json.dumps(x) + "\n")
    scan = scan_source(work / "items.jsonl")
    cpus = os.cpu_count() or 1
    configs = {"local": None,
               f"ray, 1 actor x {cpus} CPUs": RayOptions(actors=1, cpus_per_actor=cpus, shard_size=args.shard_size),
               f"ray, {cpus} actors x 1 CPU (default)": RayOptions(shard_size=args.shard_size)}
    rounds: list[dict[str, float]] = []
    images = 0
    for r in range(args.rounds):
        runs: dict[str, float] = {}
        counts = None
        for name, ro in configs.items():
            out = work / f"out-{r}-{len(runs)}"
            t0 = time.perf_counter()
            encoder = load_encoder("builtin")
            if ro is None:
                report = build_index(scan, encoder, out, BuildOptions())
            else:
                report = build_index_ray(scan, encoder, out, BuildOptions(), ro)
            runs[name] = time.perf_counter() - t0
            counts = counts or report.counts
            assert report.counts == counts, (report.counts, counts)
            images = report.images_encoded
            shutil.rmtree(out)
            print(f"round {r + 1}: {name}: {runs[name]:.1f} s", flush=True)
        rounds.append(runs)
    overhead = [{k: v / runs["local"] - 1 for k, v in runs.items() if k != "local"} for runs in rounds]
    result = {"items": len(scan.items), "images": images, "shard_size": args.shard_size, "rounds": rounds,
              "overhead_per_round": overhead,
              "overhead_median": {k: statistics.median(o[k] for o in overhead) for k in overhead[0]},
              "images_per_second_median": {k: images / statistics.median(r[k] for r in rounds) for k in configs},
              "versions": package_versions(), "machine": {"platform": platform.platform(), "cpus": cpus}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
