"""A Hugging Face hub stand-in on loopback: the few endpoints huggingface_hub's snapshot_download
calls (model info, tree listing, file resolve with HEAD and ranged GET), serving local folders.

Tests point ``HF_ENDPOINT`` at it; nothing ever contacts a real host.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    """Serves ``{repo_id: folder}``; ``requests`` records (method, path) of every call."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {r: Path(f) for r, f in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self.sha = {r: hashlib.sha1(r.encode()).hexdigest() for r in repos}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub._handle(self, body=True)

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _files(self, repo: str) -> list[str]:
        root = self.repos[repo]
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def _json(self, h: BaseHTTPRequestHandler, data: object, status: int = 200) -> None:
        raw = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def _handle(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append((h.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._json(h, {"error": "Repository not found"}, 404)
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._json(h, {"id": repo, "sha": self.sha[repo],
                                      "siblings": [{"rfilename": f} for f in self._files(repo)]})
            if rest[0] == "tree":
                root = self.repos[repo]
                return self._json(h, [{"type": "file", "path": f, "size": (root / f).stat().st_size,
                                       "oid": hashlib.sha1((root / f).read_bytes()).hexdigest()}
                                      for f in self._files(repo)])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in self.repos or not (self.repos[repo] / name).is_file():
                return self._json(h, {"error": "Entry not found"}, 404)
            data = (self.repos[repo] / name).read_bytes()
            start = 0
            if body and (rng := h.headers.get("Range", "")).startswith("bytes="):
                start = int(rng[6:].split("-")[0] or 0)
            h.send_response(206 if start else 200)
            h.send_header("X-Repo-Commit", self.sha[repo])
            h.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            h.send_header("Content-Length", str(len(data) - start))
            h.end_headers()
            if body:
                h.wfile.write(data[start:])
            return None
        return self._json(h, {"error": "not found"}, 404)


class SilentServer:
    """Accepts TCP connections and never answers: a black-holed hub."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
