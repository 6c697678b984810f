"""A bounded load generator for an ITR server: N concurrent clients, a fixed number of requests each.

Used by the load test and ``benchmarks/serve_load.py``, and usable against any deployment. Standard
library only (threads, one keep-alive ``http.client`` connection per client), so it runs wherever the
server does; a fixed request count, not a duration, keeps runs comparable and bounded.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit


@dataclass(slots=True)
class LoadReport:
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)

    @staticmethod
    def _pct(values: Sequence[float], q: float) -> float:
        if not values:
            return float("nan")
        s = sorted(values)
        return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        out: dict[str, Any] = {
            "clients": self.clients, "requests": self.requests, "errors": len(self.errors),
            "seconds": round(self.seconds, 2), "rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self._pct(lat, 50), 2), "p95_ms": round(self._pct(lat, 95), 2),
            "p99_ms": round(self._pct(lat, 99), 2), "max_ms": round(max(lat), 2) if lat else float("nan"),
        }
        out["by_kind"] = {k: {"n": len(v), "p50_ms": round(self._pct(v, 50), 2), "p99_ms": round(self._pct(v, 99), 2)}
                          for k, v in sorted(self.by_kind.items())}
        return out


def wait_for_server(base_url: str, proc: Any = None, timeout: float = 60.0) -> None:
    """Poll ``/api/health`` until the server answers; raise early if ``proc`` (a Popen) exits."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(base_url + "/api/health", timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the server at {base_url} did not answer within {timeout:.0f} s")


def default_mix(queries: Sequence[str], item_ids: Sequence[str], modes: Sequence[str] = ("dense",)) -> list[tuple[str, str]]:
    """(kind, path) requests a search page makes: text searches in each mode, the thumbnails of
    results, "more like this", and the odd info call."""
    mix: list[tuple[str, str]] = []
    for q in queries:
        for mode in modes:
            mix.append((f"search:{mode}", "/api/search?" + urlencode({"q": q, "k": 24, "mode": mode})))
    for i in item_ids:
        mix.append(("thumbnail", f"/api/items/{quote(i, safe='/')}/thumbnail?size=256"))
    for i in item_ids[: max(1, len(item_ids) // 4)]:
        mix.append(("similar", f"/api/items/{quote(i, safe='/')}/similar?k=24"))
    mix.append(("info", "/api/info"))
    return mix


def run_load(base_url: str, mix: Sequence[tuple[str, str]], *, clients: int = 50, requests_per_client: int = 20,
             seed: int = 0, timeout: float = 60.0) -> LoadReport:
    """Each of ``clients`` threads sends ``requests_per_client`` GET requests drawn from ``mix``
    (seeded), over its own keep-alive connection; every non-200 answer or transport error is an error."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lock = threading.Lock()
    report = LoadReport(clients=clients, requests=clients * requests_per_client, seconds=0.0)
    start_gate = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        lat: list[tuple[str, float]] = []
        errs: list[str] = []
        start_gate.wait()
        for _ in range(requests_per_client):
            kind, path = mix[rng.randrange(len(mix))]
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                res = conn.getresponse()
                res.read()
                if res.status != 200:
                    errs.append(f"{path}: HTTP {res.status}")
            except (OSError, http.client.HTTPException) as exc:
                errs.append(f"{path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            lat.append((kind, (time.perf_counter() - t0) * 1000))
        conn.close()
        with lock:
            for kind, ms in lat:
                report.latencies_ms.append(ms)
                report.by_kind.setdefault(kind, []).append(ms)
            report.errors.extend(errs)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    report.seconds = time.perf_counter() - t0
    return report
