"""Cold ``itr search INDEX "text"``: wall and CPU time of a fresh process, against ``import torch``
measured in the same run, and (``--before REV``) against an earlier revision of ITR run from a
git worktree with the same environment, so before/after are compared on one machine in one run.

Usage:
    python benchmarks/cold_cli.py --index .demo/index --before a69199e --runs 5 --json bench-out/cold_cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default=".demo/index")
    ap.add_argument("--query", default="a jar of beans")
    ap.add_argument("--before", help="git revision to compare with (run from a temporary worktree)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    variants = {"import torch": [sys.executable, "-c", "import torch"],
                "itr search (this tree)": [sys.executable, "-m", "itr.cli.main", "search", args.index, args.query, "-k", "5"]}
    envs = {k: dict(env, PYTHONPATH=str(repo / "src")) for k in variants}
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp(prefix="itr-before-"))
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        name = f"itr search ({args.before})"
        variants[name] = variants["itr search (this tree)"]
        envs[name] = dict(env, PYTHONPATH=str(worktree / "src"))
    try:
        for cmd_name, cmd in variants.items():  # one warm-up each: the page cache, not the code, is cold then
            timed(cmd, envs[cmd_name])
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.runs):  # interleaved, so drift hits every variant alike
            for cmd_name, cmd in variants.items():
                samples[cmd_name].append(timed(cmd, envs[cmd_name]))
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(worktree)], check=False)
    torch_wall = statistics.median(w for w, _ in samples["import torch"])
    rows = []
    for cmd_name, s in samples.items():
        wall, cpu = statistics.median(w for w, _ in s), statistics.median(c for _, c in s)
        rows.append({"command": cmd_name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "vs_import_torch": round(wall / torch_wall, 2)})
    print(f"| command | wall s (median of {args.runs}) | CPU s | x import torch |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['command']} | {r['wall_s']} | {r['cpu_s']} | {r['vs_import_torch']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "index": args.index, "query": args.query, "runs": args.runs,
                                         "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}},
                                        indent=2))


if __name__ == "__main__":
    main()
