"""Encoding throughput of ``itr index --engine ray`` against the in-process path, same machine.

Both build a fresh index of the same items with the built-in model: the emoji set (real PNG files)
repeated ``--repeat`` times under new ids, so the run is long enough for Ray's start-up to be a
fair share of it. Ray runs locally (started by the job, as ``itr index --engine ray`` does) and the
reported time includes starting Ray, the pipeline and the merge. Overhead = ray time / local time - 1.

Usage:
    python benchmarks/ray_encode.py --data .demo/emoji --repeat 2 --json bench-out/ray_encode.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
    ap.add_argument("--shard-size", type=int, default=256)
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
    encoder = load_encoder("builtin")
    cpus = os.cpu_count() or 1
    runs = {}
    t0 = time.perf_counter()
    local = build_index(scan, encoder, work / "local", BuildOptions())
    runs["local"] = time.perf_counter() - t0
    print(f"local: {runs['local']:.1f} s", flush=True)
    for name, ro in [("ray, 1 actor x all CPUs", RayOptions(actors=1, cpus_per_actor=cpus, shard_size=args.shard_size)),
                     ("ray, 1 actor per CPU", RayOptions(actors=cpus, cpus_per_actor=1, shard_size=args.shard_size))]:
        out = work / name.replace(" ", "_").replace(",", "")
        t0 = time.perf_counter()
        report = build_index_ray(scan, encoder, out, BuildOptions(), ro)
        runs[name] = time.perf_counter() - t0
        assert report.counts == local.counts, (report.counts, local.counts)
        print(f"{name}: {runs[name]:.1f} s", flush=True)
    n = local.images_encoded
    result = {"items": len(scan.items), "images": n, "seconds": runs,
              "images_per_second": {k: n / v for k, v in runs.items()},
              "overhead": {k: v / runs["local"] - 1 for k, v in runs.items() if k != "local"},
              "versions": package_versions(), "machine": {"platform": platform.platform(), "cpus": cpus}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
