"""The HTTP API against the adversarial corpus (tests/hostile.py): odd names, hostile uploads and
meta, cross-site requests and DNS rebinding. Nothing may end in a 500 or change the index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import LOCAL, color_service, png_bytes
from hostile import NON_UTF8_ID, strict_json, wide_png_bytes, write_hostile_images, write_hostile_jsonl

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from itr.collection import scan_source  # noqa: E402
from itr.index import BuildOptions, build_index  # noqa: E402
from itr.server import create_app  # noqa: E402
from itr.server.guard import RequestGuard  # noqa: E402
from itr.testing import ColorEncoder, DimensionSparseEncoder  # noqa: E402


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    root = tmp_path_factory.mktemp("hostile")
    cases = write_hostile_images(root / "photos")
    enc = ColorEncoder()
    report = build_index(scan_source(root / "photos"), enc, root / "index", BuildOptions(representation="both"),
                         sparse=DimensionSparseEncoder(enc.dim))
    assert len(report.failed) == sum(not c.ok for c in cases), report.failed
    return root / "index", cases


@pytest.fixture(scope="module")
def client(hostile_index: tuple[Path, list[Any]]) -> Any:
    svc = color_service(hostile_index[0], refresh_seconds=0)
    with TestClient(create_app(svc), base_url=LOCAL) as c:
        c.service = svc  # type: ignore[attr-defined]
        yield c
    svc.close()


def test_odd_names_round_trip_through_json_and_urls(client: TestClient, hostile_index: tuple[Path, list[Any]]) -> None:
    res = client.get("/api/search", params={"q": "green", "k": 20})
    assert res.status_code == 200, res.text
    body = strict_json(res.content.decode("utf-8"))
    assert isinstance(body, dict)
    ids = [r["id"] for r in body["results"]]
    ok_ids = {c.name for c in hostile_index[1] if c.ok}
    assert set(ids) == ok_ids and NON_UTF8_ID in ids and "line\\x0abreak.png" in ids
    for r in body["results"]:  # paths relative to the collection: no server folder layout
        assert not r["path"].startswith("/") and r["path"] == r["id"], r
        item = client.get(f"/api/items/{quote(r['id'])}")
        assert item.status_code == 200 and item.json()["id"] == r["id"] and item.json()["image"] == r["id"]
        thumb = client.get(r["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        similar = client.get(f"/api/items/{quote(r['id'])}/similar", params={"k": 3})
        assert similar.status_code == 200 and r["id"] not in [h["id"] for h in similar.json()["results"]]
    info = client.get("/api/info").json()
    assert info["index"] == "index"  # the folder's name, not its absolute path


@pytest.mark.parametrize("size", [(8000, 1), (1, 8000), (20000, 1), (60000, 1)])
def test_extreme_aspect_ratio_uploads_are_answered(client: TestClient, size: tuple[int, int]) -> None:
    res = client.post("/api/search/image", params={"k": 1}, files={"image": ("w.png", wide_png_bytes(size), "image/png")})
    assert res.status_code == 200, res.text
    assert len(res.json()["results"]) == 1


@pytest.mark.parametrize("name, data, message", [
    ("empty.png", b"", "empty file"),
    ("text.png", b"not pixels", "not a readable image"),
    ("cut.png", png_bytes("red")[:60], "truncated"),
])
def test_bad_uploads_get_one_line_400s(client: TestClient, name: str, data: bytes, message: str) -> None:
    res = client.post("/api/search/image", files={"image": (name, data, "image/png")})
    assert res.status_code == 400 and message in res.json()["detail"], res.text


def test_bomb_upload_names_the_servers_limit_not_a_cli_flag(hostile_index: tuple[Path, list[Any]]) -> None:
    from itr.service import ServiceLimits

    svc = color_service(hostile_index[0], limits=ServiceLimits(max_pixels=10_000), read_only=True)
    res = TestClient(create_app(svc), base_url=LOCAL).post(
        "/api/search/image", files={"image": ("big.png", png_bytes("red", (200, 200)), "image/png")})
    detail = res.json()["detail"]
    assert res.status_code == 400 and "this server accepts images of at most" in detail and "--max-pixels" not in detail


def test_hostile_jsonl_items_are_served(tmp_path: Path) -> None:
    src = write_hostile_jsonl(tmp_path / "src")
    enc = ColorEncoder()
    report = build_index(scan_source(src.jsonl), enc, tmp_path / "index", BuildOptions())
    assert report.staged == src.ok_ids
    svc = color_service(tmp_path / "index", refresh_seconds=0)
    client = TestClient(create_app(svc), base_url=LOCAL)
    res = client.get("/api/search", params={"q": "x", "target": "texts", "k": 10})
    assert res.status_code == 200 and {r["item_id"] for r in strict_json(res.text)["results"]} == set(src.ok_ids)
    assert client.get("/api/items/b").json()["meta"] == {"note": "café ☕"}


# -- cross-site requests and DNS rebinding -------------------------------------------------------------
def _generation(client: TestClient) -> int:
    return int(client.get("/api/health").json()["generation"])


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # sandboxed iframes, file:// pages
    {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
    {"Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_writes_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    before = _generation(client)
    add = client.post("/api/items", data={"captions": ["defaced"], "id": "good-red.png"}, headers=headers)
    form = client.post("/api/items", content=b"captions=defaced&id=good-red.png", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    delete = client.delete("/api/items/good-red.png", headers=headers)
    for res in (add, form, delete):
        assert res.status_code == 403 and "cross-site" in res.json()["detail"], res.text
    assert _generation(client) == before
    assert client.get("/api/items/good-red.png").json()["captions"] == []  # still the source's image item


def test_same_origin_and_allowed_origins_may_write(hostile_index: tuple[Path, list[Any]], tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "copy"
    shutil.copytree(hostile_index[0], index)
    svc = color_service(index, refresh_seconds=0)
    guard = RequestGuard(allowed_origins=("https://app.example.org",))
    client = TestClient(create_app(svc, guard=guard), base_url=LOCAL)
    for n, origin in enumerate(("http://127.0.0.1", "https://app.example.org")):
        res = client.post("/api/items", data={"captions": [f"from {origin}"], "id": f"w{n}"}, headers={"Origin": origin})
        assert res.status_code == 201, res.text
    assert client.post("/api/items", data={"captions": ["no browser"], "id": "curl"}).status_code == 201  # no Origin
    assert client.delete("/api/items/w0", headers={"Origin": "https://other.example.org"}).status_code == 403
    svc.close()


@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("evil.example:8000", 400), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
    ("localhost:8000", 200), ("10.1.2.3", 200),
])
def test_host_names_are_checked_on_every_request(client: TestClient, host: str, status: int) -> None:
    for res in (client.get("/api/info", headers={"Host": host}),
                client.delete("/api/items/nope", headers={"Host": host})):
        assert res.status_code in ((status,) if status != 200 else (200, 404)), (host, res.text)
        if status == 400:
            assert "DNS-rebinding" in res.json()["detail"]


def test_allowed_host_names(hostile_index: tuple[Path, list[Any]]) -> None:
    svc = color_service(hostile_index[0], read_only=True)
    client = TestClient(create_app(svc, guard=RequestGuard(allowed_hosts=("search.example.org",))), base_url=LOCAL)
    assert client.get("/api/info", headers={"Host": "search.example.org"}).status_code == 200
    assert client.get("/api/info", headers={"Host": "evil.example"}).status_code == 400
    anything = TestClient(create_app(svc, guard=RequestGuard(allowed_hosts=("*",))), base_url=LOCAL)
    assert anything.get("/api/info", headers={"Host": "evil.example"}).status_code == 200


def test_responses_are_strict_json_whatever_the_index_holds(tmp_path: Path) -> None:
    """An index written before ids were checked can hold a surrogate-escaped id and NaN meta; the
    server still answers valid JSON instead of a 500."""
    from itr.index import IndexWriter

    enc = ColorEncoder()
    build_index(scan_source(write_hostile_jsonl(tmp_path / "src").jsonl), enc, tmp_path / "index", BuildOptions())
    import numpy as np

    from itr.collection import SourceItem
    from itr.index.build import segment_records

    items, texts = segment_records([SourceItem(id="old\udce9", image=None, captions=("legacy",),
                                               meta={"v": float("nan")}, signature="s")])
    with IndexWriter(tmp_path / "index", encoder=enc.describe(), source=str(tmp_path / "src" / "hostile.jsonl")) as w:
        w.add_segment(items, np.zeros((0, enc.dim), np.float32), texts, enc.encode_texts(["legacy"]))
        w.commit()
    svc = color_service(tmp_path / "index", refresh_seconds=0)
    res = TestClient(create_app(svc), base_url=LOCAL).get("/api/search", params={"q": "legacy", "target": "texts"})
    assert res.status_code == 200
    hit = next(r for r in strict_json(res.content.decode("utf-8"))["results"] if r["text"] == "legacy")
    assert hit["item_id"] == "old\\xe9" and hit["meta"] == {"v": None}
    json.loads(res.content)
