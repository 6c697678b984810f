"""Loopback load test of `itr serve`: 50 concurrent clients, a fixed number of requests, 0 errors expected.

Starts the real CLI server (uvicorn, one process) on the demo index (built-in model, --repr both),
with a fresh thumbnail cache, warms it up, then runs
  1. one client (latency without queueing), and
  2. N concurrent clients (default 50),
then repeats the concurrent run on a server started with --max-batch 1 (no query batching), for the
ratio. Every client sends a seeded mix of what the search page sends: text searches in dense, sparse and hybrid
mode, thumbnails of results, "more like this", info. Client and server share this machine's cores.

    python benchmarks/serve_load.py --index .demo/index --json bench-out/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from itr.index import DenseIndex
from itr.server.loadgen import default_mix, run_load, wait_for_server

QUERIES = ["a bicycle", "a cat", "pizza", "a red heart", "the moon", "a musical instrument", "a dog", "rain",
           "a flag", "fire", "a car", "a happy face", "fruit", "a bird", "a house", "money", "a clock", "a tree",
           "sports", "a jar of beans"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(index: Path, thumbs: Path, max_batch: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = _free_port()
    itr = shutil.which("itr", path=os.path.dirname(sys.executable)) or "itr"
    proc = subprocess.Popen([itr, "serve", str(index), "--port", str(port), "--log-level", "warning", "--read-only",
                             "--max-batch", str(max_batch), "--thumbnail-cache", str(thumbs)])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, proc, timeout=180)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        raise SystemExit(str(exc)) from None
    return base, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=".demo/index", help="index folder (make demo builds .demo/index)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40, help="requests per client")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    index = Path(args.index)
    idx = DenseIndex.open(index)
    ids = [it["id"] for it in idx.items() if it.get("row") is not None]
    random.Random(0).shuffle(ids)
    modes = [m for m in ("dense", "sparse", "hybrid") if m == "dense" or "sparse" in idx.representations]
    mix = default_mix(QUERIES, ids[:200], modes=modes)

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, max_batch in (("batched", 64), ("unbatched", 1)):
            base, proc = _start(index, Path(tmp) / label, max_batch)
            try:
                # Warm-up: compile the sparse kernels, touch every kind of request once (most of the 200
                # thumbnails stay cold: the first run makes them, as first page views would).
                run_load(base, mix[:: max(1, len(mix) // 50)], clients=1, requests_per_client=50, seed=99)
                if label == "batched":
                    runs["single_client"] = run_load(base, mix, clients=1, requests_per_client=200, seed=1)
                runs[label] = run_load(base, mix, clients=args.clients, requests_per_client=args.requests, seed=2)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    single, loaded, unbatched = runs["single_client"], runs["batched"], runs["unbatched"]
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "index": {"path": str(index), "items": len(idx), "representations": idx.representations,
                  "model": idx.encoder_info["spec"]},
        "single_client": single.summary(),
        "concurrent": loaded.summary(),
        "concurrent_max_batch_1": unbatched.summary(),
        "batching_speedup_rps": round(loaded.summary()["rps"] / unbatched.summary()["rps"], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if loaded.errors or single.errors or unbatched.errors:
        print("errors:", (single.errors + loaded.errors + unbatched.errors)[:10], file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
