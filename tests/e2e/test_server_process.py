"""A real server process: kill -9 during uploads loses no acknowledged item; 50 clients, 0 errors."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from helpers import color_index, color_service, png_bytes, start_color_server

pytest.importorskip("fastapi")

from itr.index import DenseIndex  # noqa: E402
from itr.search import Searcher  # noqa: E402
from itr.server.loadgen import default_mix, run_load, wait_for_server  # noqa: E402
from itr.testing import ColorEncoder  # noqa: E402


def _upload(base: str, item_id: str, rgb: tuple[int, int, int]) -> int:
    """POST one item with the standard library (a multipart body by hand keeps the test dependency-free)."""
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    parts = [(b'Content-Disposition: form-data; name="id"', item_id.encode()),
             (b'Content-Disposition: form-data; name="captions"', f"caption of {item_id}".encode()),
             (b'Content-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png',
              png_bytes(rgb))]
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    req = urllib.request.Request(base + "/api/items", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return int(res.status)


def test_kill_9_during_adds_loses_no_acknowledged_item(tmp_path: Path) -> None:
    index = color_index(tmp_path)
    acked: set[str] = set()
    lock = threading.Lock()
    rng = random.Random(0)
    for rnd in range(3):
        proc, base = start_color_server(index)
        stop = threading.Event()

        def client(n: int, rnd: int = rnd, base: str = base, stop: threading.Event = stop) -> None:
            i = 0
            while not stop.is_set():
                item_id = f"r{rnd}-c{n}-{i}"
                try:
                    status = _upload(base, item_id, (rnd * 60, n * 40, i % 256))
                except OSError:
                    return  # the server died: this request was never acknowledged
                if status in (200, 201):
                    with lock:
                        acked.add(item_id)
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(a.startswith(f"r{rnd}-") for a in list(acked)) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # land somewhere inside a commit
        proc.kill()  # SIGKILL: no clean-up runs
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
        idx = DenseIndex.open(index)  # loadable
        live = {it["id"] for it in idx.items()}
        missing = acked - live
        assert not missing, f"round {rnd}: acknowledged but lost: {sorted(missing)[:5]}"
        assert idx.counts["items"] == len(live) and Searcher(ColorEncoder(), idx).search_text("red", k=3)
    # a restart removes uploads whose commit never happened; every remaining file belongs to an item
    svc = color_service(index)
    used = {it.get("image") for it in svc.index.items()}
    media = {str(p) for p in (index / "media").iterdir()}
    assert media <= used and len(acked) >= 30
    svc.close()


def test_fifty_concurrent_clients_no_errors(tmp_path: Path) -> None:
    index = color_index(tmp_path, n=40)
    proc, base = start_color_server(index)
    try:
        ids = [f"img/{i:03d}.png" for i in range(40)]
        mix = default_mix(["red", "a green square", "blue number 3", "yellow"], ids, modes=("dense", "sparse", "hybrid"))
        report = run_load(base, mix, clients=50, requests_per_client=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    s = report.summary()
    print("load:", s)
    assert s["errors"] == 0, report.errors[:5]
    assert s["requests"] == 500 and len(report.latencies_ms) == 500


@pytest.mark.builtin
def test_itr_serve_command(emoji_jsonl: Path, tmp_path: Path) -> None:
    import json
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import urllib.request

    from helpers import free_port, run_cli

    index = tmp_path / "index"
    assert run_cli("index", emoji_jsonl, "--out", index, "-q")[0] == 0
    itr = shutil.which("itr", path=os.path.dirname(sys.executable)) or "itr"
    bad = subprocess.run([itr, "serve", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such index" in bad.stderr
    port = free_port()
    proc = subprocess.Popen([itr, "serve", str(index), "--port", str(port), "--read-only", "--log-level", "warning"],
                            stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(base, proc, timeout=120)
        with urllib.request.urlopen(base + "/api/info") as res:
            info = json.load(res)
        assert info["read_only"] and info["counts"]["images"] == 120 and info["modes"] == ["dense"]
        with urllib.request.urlopen(base + "/api/search?q=a%20jar&k=3") as res:
            assert json.load(res)["results"][0]["caption"] == "jar"
        with urllib.request.urlopen(base + "/") as res:
            assert b"<title>ITR search</title>" in res.read()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "serving" in stderr and "(read-only)" in stderr and "server stopped" in stderr
