"""What one hostile upload costs the server: a 20000 x 1 PNG (a few hundred bytes) as an image query.

1. Peak memory of one image search, in a fresh process per case (``IndexService`` on the index,
   warmed up with one small image and one text query first; the peak is read from the kernel's
   VmHWM after resetting it, so it counts decode, preprocessing and the model call):
   a normal 640 x 480 photo-sized upload against the 20000 x 1 one (target: within 50 MB).
   ``--with-legacy`` adds the 20000 x 1 case through the old resize (shorter side first, then crop)
   for the before/after figure (it needs about 3 GB).
2. Search latency of 10 concurrent text clients against a real ``itr serve`` process, without and
   with one client posting the 20000 x 1 PNG in a loop meanwhile (target: p99 within 1.5x). Rounds
   alternate the two conditions; the medians are reported.

    python benchmarks/hostile_upload.py --index .demo/index --json bench-out/hostile_upload.json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

QUERIES = ["a bicycle", "a cat", "pizza", "a red heart", "the moon", "a dog", "rain", "a flag", "fire", "a car"]


def _png(size: tuple[int, int], noise: bool = False) -> bytes:
    from PIL import Image

    img = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, (200, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if noise else "PNG", quality=90)
    return buf.getvalue()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _legacy_resize(image: Any, size: int) -> Any:
    """The resize before the fix: the shorter side to ``size`` first, then the centre crop."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def measure(index: str, case: str) -> dict[str, Any]:
    """One image search in this (fresh) process; its peak memory above the warmed-up state."""
    from itr.service import IndexService

    if case == "legacy-20000x1":
        import itr.encoders.builtin as builtin

        builtin.resize_center_crop = _legacy_resize  # type: ignore[assignment]
    data = _png((640, 480), noise=True) if case == "640x480" else _png((20000, 1))
    svc = IndexService.open(index, read_only=True)
    svc.search_image(_png((64, 64), noise=True))
    svc.search_text("a cat")
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak) to the current RSS
    t0 = time.perf_counter()
    hits = svc.search_image(data).hits
    ms = (time.perf_counter() - t0) * 1000
    peak = _status_kb("VmHWM")
    return {"case": case, "upload_bytes": len(data), "rss_mb": round(before / 1024, 1),
            "peak_above_rss_mb": round((peak - before) / 1024, 1), "search_ms": round(ms, 1), "hits": len(hits)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clients_p99(base: str, clients: int, requests: int, hostile: bool) -> dict[str, Any]:
    """``clients`` threads send ``requests`` text searches each; with ``hostile``, one more thread
    posts the 20000 x 1 PNG as an image query, back to back, until they are done."""
    from itr.server.loadgen import run_load

    host, port = base.removeprefix("http://").split(":")
    stop = threading.Event()
    uploads: list[float] = []
    body, boundary = _multipart(_png((20000, 1)))

    def hostile_client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while not stop.is_set():
            t0 = time.perf_counter()
            conn.request("POST", "/api/search/image?k=10", body=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            res = conn.getresponse()
            res.read()
            if res.status != 200:
                raise SystemExit(f"hostile upload: HTTP {res.status}")
            uploads.append((time.perf_counter() - t0) * 1000)
        conn.close()

    mix = [("search", "/api/search?" + urlencode({"q": q, "k": 24})) for q in QUERIES]
    thread = threading.Thread(target=hostile_client, daemon=True) if hostile else None
    if thread:
        thread.start()
        time.sleep(0.2)
    report = run_load(base, mix, clients=clients, requests_per_client=requests, seed=len(uploads))
    stop.set()
    if thread:
        thread.join()
    s = report.summary()
    if report.errors:
        raise SystemExit(f"errors: {report.errors[:5]}")
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "rps": s["rps"], "hostile_uploads": len(uploads),
            "hostile_upload_p50_ms": round(statistics.median(uploads), 1) if uploads else None}


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "itrbenchboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"w.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=".demo/index")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=40, help="text searches per client per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--with-legacy", action="store_true", help="also measure the old resize's memory (about 3 GB)")
    ap.add_argument("--json")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one memory case in this process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.index, args.measure)))
        return
    cases = ["640x480", "20000x1"] + (["legacy-20000x1"] if args.with_legacy else [])
    memory = {}
    for case in cases:
        out = subprocess.run([sys.executable, __file__, "--index", args.index, "--measure", case],
                             check=True, capture_output=True, text=True)
        memory[case] = json.loads(out.stdout.strip().splitlines()[-1])
        print(memory[case], file=sys.stderr)

    port = _free_port()
    itr = shutil.which("itr", path=os.path.dirname(sys.executable)) or "itr"
    proc = subprocess.Popen([itr, "serve", args.index, "--port", str(port), "--log-level", "warning", "--read-only"])
    base = f"http://127.0.0.1:{port}"
    rounds: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    try:
        from itr.server.loadgen import wait_for_server

        wait_for_server(base, proc, timeout=180)
        _clients_p99(base, args.clients, 5, hostile=False)  # warm-up
        for r in range(args.rounds):
            for cond in (("without", "with") if r % 2 == 0 else ("with", "without")):
                rounds[cond].append(_clients_p99(base, args.clients, args.requests, hostile=cond == "with"))
                print(cond, rounds[cond][-1], file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    p99 = {c: statistics.median(x["p99_ms"] for x in rs) for c, rs in rounds.items()}
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "index": args.index,
        "memory": memory,
        "memory_extra_mb_20000x1_vs_640x480": round(memory["20000x1"]["peak_above_rss_mb"]
                                                    - memory["640x480"]["peak_above_rss_mb"], 1),
        "latency_rounds": rounds,
        "p99_ms_median": p99,
        "p99_ratio_with_hostile_upload": round(p99["with"] / p99["without"], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
