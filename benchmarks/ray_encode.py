"""Encoding throughput of ``itr index --engine ray`` against the in-process path, same machine.

Both build a fresh index of the same items with the built-in model: the emoji set (real PNG files)
repeated ``--repeat`` times under new ids. Times are end to end, as ``itr index`` and ``itr index
--engine ray`` run: loading the model in this process, the build, and for Ray starting a local Ray
(as the job does when no ``--ray-address`` is given), the actors loading their models, the pipeline
and the merge. Overhead = ray time / in-process time - 1. The steady rate is items/s between the first and the
last progress report (start-up and shut-down left out; for Ray the last shard's imbalance stays in).

The machine's speed drifts (a shared VM: the same in-process build varied by 1.5x over an hour), so
each round runs every configuration back to back and the overhead is taken within a round; the
report gives each round's and the median.

Usage:
    python benchmarks/ray_encode.py --data .demo/emoji --repeat 4 --rounds 3 --configs local,ray-default --json bench-out/ray_encode.json
"""

from __future__ import annotations

import argparse
import functools
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
from itr.index.distributed import RayOptions, RaySession, build_index_ray


def _tick(ticks: list[tuple[float, int]], done: int, _total: int) -> None:
    ticks.append((time.perf_counter(), done))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".demo/emoji"), help="folder of itr make-dataset emoji")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=RayOptions().shard_size)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--configs", default="local,ray-1-actor,ray-default",
                    help="comma-separated: local, ray-1-actor (one actor holding every CPU), ray-default")
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
    every = {"local": None,
             f"ray, 1 actor x {cpus} CPUs": RayOptions(actors=1, cpus_per_actor=cpus, shard_size=args.shard_size),
             f"ray, {cpus} actors x 1 CPU (default)": RayOptions(shard_size=args.shard_size)}
    keys = dict(zip(("local", "ray-1-actor", "ray-default"), every, strict=True))
    configs = {keys[c]: every[keys[c]] for c in args.configs.split(",")}
    rounds: list[dict[str, float]] = []
    steady_rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        runs: dict[str, float] = {}
        steady: dict[str, float] = {}
        counts = None
        # odd rounds run the configurations in reverse, so a machine that drifts (faster or slower)
        # over the run favours none of them in the median
        for name, ro in (list(configs.items()) if r % 2 == 0 else list(configs.items())[::-1]):
            out = work / f"out-{r}-{len(runs)}"
            ticks: list[tuple[float, int]] = []
            tick = functools.partial(_tick, ticks)
            t0 = time.perf_counter()
            if ro is None:
                encoder = load_encoder("builtin")
                report = build_index(scan, encoder, out, BuildOptions(),
                                     progress=tick)
            else:
                with RaySession(ro.address) as session:  # as the CLI does: Ray starts while the model loads
                    encoder = load_encoder("builtin")
                    report = build_index_ray(scan, encoder, out, BuildOptions(), ro, session=session,
                                             progress=tick)
            runs[name] = time.perf_counter() - t0
            done = [t for t in ticks if t[1] > 0]
            steady[name] = (done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0])
            counts = counts or report.counts
            assert report.counts == counts, (report.counts, counts)
            images = report.images_encoded
            shutil.rmtree(out)
            print(f"round {r + 1}: {name}: {runs[name]:.1f} s, steady {steady[name]:.1f} items/s", flush=True)
        rounds.append(runs)
        steady_rounds.append(steady)
    overhead = [{k: v / runs["local"] - 1 for k, v in runs.items() if k != "local"} for runs in rounds]
    result = {"items": len(scan.items), "images": images, "shard_size": args.shard_size, "rounds": rounds,
              "overhead_per_round": overhead,
              "overhead_median": {k: statistics.median(o[k] for o in overhead) for k in overhead[0]},
              "images_per_second_median": {k: images / statistics.median(r[k] for r in rounds) for k in configs},
              # between the first and the last progress report: start-up and shut-down left out
              "steady_items_per_second": steady_rounds,
              "steady_overhead_median": {k: statistics.median(s["local"] / s[k] - 1 for s in steady_rounds)
                                         for k in configs if k != "local"},
              "versions": package_versions(), "machine": {"platform": platform.platform(), "cpus": cpus}}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
