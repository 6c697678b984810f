"""The HTTP API through FastAPI's TestClient, on an index of the test encoders (fast, deterministic)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import LOCAL, color_collection, color_index, color_service, png_bytes
from hostile import HOSTILE_META

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from itr.collection import scan_source  # noqa: E402
from itr.index import BuildOptions, DenseIndex, build_index  # noqa: E402
from itr.server import create_app  # noqa: E402
from itr.service import ServiceLimits  # noqa: E402
from itr.testing import ColorEncoder, DimensionSparseEncoder  # noqa: E402


@pytest.fixture
def served(tmp_path: Path) -> Any:
    svc = color_service(color_index(tmp_path), refresh_seconds=0)
    with TestClient(create_app(svc), base_url=LOCAL) as client:
        client.service = svc  # type: ignore[attr-defined]
        yield client
    svc.close()


def _ids(res: Any) -> list[str]:
    return [r["item_id"] for r in res.json()["results"]]


def test_health_info_and_openapi(served: TestClient) -> None:
    assert served.get("/api/health").json()["status"] == "ok"
    info = served.get("/api/info").json()
    assert info["model"] == "test:color" and info["counts"] == {"items": 12, "images": 12, "texts": 12}
    assert info["modes"] == ["dense", "sparse", "hybrid"] and info["representations"] == ["dense", "sparse"]
    spec = served.get("/openapi.json").json()
    for path in ("/api/search", "/api/search/image", "/api/items", "/api/items/{item_id}/thumbnail",
                 "/api/items/{item_id}/similar", "/api/items/{item_id}"):
        assert path in spec["paths"], path
    assert "SearchResult" in spec["components"]["schemas"]


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_text_search_every_mode(served: TestClient, mode: str) -> None:
    res = served.get("/api/search", params={"q": "green", "k": 3, "mode": mode, "explain": True})
    body = res.json()
    assert res.status_code == 200 and body["query"] == "green" and body["mode"] == mode
    assert _ids(res) == ["img/001.png", "img/005.png", "img/009.png"]
    hit = body["results"][0]
    assert hit["kind"] == "image" and hit["path"].endswith("001.png") and hit["meta"] == {"color": "green"}
    assert hit["caption"] == "a green square number 1" and hit["thumbnail"] == "/api/items/img/001.png/thumbnail"
    assert hit["terms"] is not None  # explain: matched terms, in every mode of an index with sparse vectors
    texts = served.get("/api/search", params={"q": "number 7", "target": "texts", "k": 1}).json()
    assert texts["results"][0]["id"] == "img/007.png#0" and texts["results"][0]["text"] == "a yellow square number 7"


def test_mode_the_index_lacks_is_a_clear_400(tmp_path: Path) -> None:
    svc = color_service(color_index(tmp_path, repr_="dense"))
    client = TestClient(create_app(svc), base_url=LOCAL)
    res = client.get("/api/search", params={"q": "red", "mode": "sparse"})
    assert res.status_code == 400 and "--mode sparse cannot run" in res.json()["detail"]
    assert client.get("/api/info").json()["modes"] == ["dense"]


def test_request_limits(served: TestClient) -> None:
    for params, where in [({"q": "x" * 1001}, "'q'"), ({"q": "red", "k": 101}, "'k'"), ({"q": "red", "k": 0}, "'k'"),
                          ({"q": ""}, "'q'"), ({"q": "red", "mode": "fuzzy"}, "'mode'"), ({}, "'q'")]:
        res = served.get("/api/search", params=params)
        assert res.status_code == 422 and where in res.json()["detail"], (params, res.text)
    assert served.get("/api/search", params={"q": "   "}).status_code == 400


def test_image_search_upload(served: TestClient) -> None:
    res = served.post("/api/search/image", files={"image": ("q.jpg", png_bytes("blue", fmt="JPEG"), "image/jpeg")},
                      params={"k": 2})
    assert res.status_code == 200 and _ids(res) == ["img/002.png", "img/006.png"] and res.json()["query"] == "q.jpg"
    bad = served.post("/api/search/image", files={"image": ("x.png", b"GIF89a broken", "image/png")})
    assert bad.status_code == 400 and "x.png: not a readable image" in bad.json()["detail"]
    assert served.post("/api/search/image").status_code == 422


def test_oversize_uploads_are_refused(tmp_path: Path) -> None:
    svc = color_service(color_index(tmp_path), limits=ServiceLimits(max_upload_bytes=50_000))
    client = TestClient(create_app(svc), base_url=LOCAL)
    big = b"\x89PNG" + b"\0" * 200_000
    for url in ("/api/search/image", "/api/items"):
        assert client.post(url, files={"image": ("big.png", big, "image/png")}).status_code == 413

    def chunks() -> Any:  # no Content-Length: the limit applies to the stream as it arrives
        for _ in range(40):
            yield b"\0" * 10_000

    res = client.post("/api/search/image", content=chunks(),
                      headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert res.status_code == 413
    assert not (svc.root / "media").exists() or not any((svc.root / "media").iterdir())
    # an image over the pixel limit is refused before decoding (decompression bomb)
    small = color_service(svc.root, limits=ServiceLimits(max_pixels=1000))
    res = TestClient(create_app(small), base_url=LOCAL).post("/api/search/image", files={"image": ("h.png", png_bytes("red", (100, 100)))})
    assert res.status_code == 400 and "decompression bombs" in res.json()["detail"]


def test_more_like_this_leaves_the_item_out(served: TestClient) -> None:
    res = served.get("/api/items/img/000.png/similar", params={"k": 3})
    assert res.status_code == 200 and _ids(res)[:2] == ["img/004.png", "img/008.png"]  # the other red ones
    assert "img/000.png" not in _ids(res) and len(_ids(res)) == 3
    assert served.get("/api/items/nope/similar").status_code == 404
    texts = served.get("/api/items/img/000.png/similar", params={"target": "texts", "k": 1}).json()
    assert texts["results"][0]["item_id"] == "img/000.png"  # its own caption is a different (text) item


def test_item_and_thumbnail(served: TestClient) -> None:
    item = served.get("/api/items/img/003.png").json()
    assert item["captions"] == ["a yellow square number 3"] and item["meta"] == {"color": "yellow"}
    res = served.get("/api/items/img/003.png/thumbnail", params={"size": 64})
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg" and res.content[:2] == b"\xff\xd8"
    again = served.get("/api/items/img/003.png/thumbnail", params={"size": 64},
                       headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304
    assert served.get("/api/items/img/999.png").status_code == 404


def test_thumbnails_serve_only_index_files(served: TestClient, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes("red"))
    for path in (f"/api/items/{secret}/thumbnail", "/api/items/%2e%2e/%2e%2e/etc/passwd/thumbnail",
                 "/api/items/..%2F..%2Fetc%2Fpasswd/thumbnail", f"/api/items/{secret}",
                 "/api/items/img/000.png/../../../secret.png/thumbnail"):
        res = served.get(path)
        assert res.status_code == 404 and res.headers["content-type"] == "application/json", path


def test_add_update_delete(served: TestClient) -> None:
    svc = served.service  # type: ignore[attr-defined]
    res = served.post("/api/items", files={"image": ("pic.png", png_bytes((250, 10, 10)), "image/png")},
                      data={"captions": ["a bright red upload", "second caption"], "meta": '{"by": "test"}', "id": "u1"})
    assert res.status_code == 201 and res.json()["status"] == "added" and res.json()["item"]["origin"] == "api"
    shown = res.json()["item"]["image"]  # relative to the index folder: no server path leaks
    assert shown.startswith("media/") and not Path(shown).is_absolute()
    media = svc.root / shown
    assert media.parent == svc.root / "media" and media.is_file()
    # visible at once, durable on disk
    assert "u1" in _ids(served.get("/api/search", params={"q": "red", "k": 4}))
    assert DenseIndex.open(svc.root).item("u1")["texts"] == ["a bright red upload", "second caption"]
    # same id again: replaced, the old file removed
    res = served.post("/api/items", files={"image": ("pic2.png", png_bytes("blue"), "image/png")}, data={"id": "u1"})
    assert res.status_code == 200 and res.json()["status"] == "updated" and not media.exists()
    assert served.get("/api/items/u1").json()["captions"] == []
    # a text-only item, and a default (content-derived) id
    t = served.post("/api/items", data={"captions": ["just words"]}).json()
    assert t["id"].startswith("upload/") and t["item"]["thumbnail"] is None
    assert served.get(f"/api/items/{t['id']}/thumbnail").status_code == 404
    # delete
    new_media = svc.root / served.get("/api/items/u1").json()["image"]
    assert served.delete("/api/items/u1").json() == {"deleted": "u1"}
    assert served.get("/api/items/u1").status_code == 404 and not new_media.exists()
    assert served.delete("/api/items/u1").status_code == 404
    assert served.get("/api/info").json()["counts"]["items"] == 13
    assert len(DenseIndex.open(svc.root)) == 13


@pytest.mark.parametrize("data, files, status, message", [
    ({}, None, 400, "needs an image, at least one non-empty caption"),
    ({"captions": ["x"], "meta": "[1, 2]"}, None, 422, "'meta': must be a JSON object"),
    ({"captions": ["x"], "meta": "{nope"}, None, 422, "'meta': not valid JSON"),
    ({"captions": ["x"], "id": " padded "}, None, 400, "id must be"),
    ({"captions": ["x"], "id": "a\nb"}, None, 400, "id must be"),
    ({"captions": ["x"], "id": "a/similar"}, None, 400, "/similar"),
    ({"captions": ["x"], "id": "a/../b"}, None, 400, "'..' segments"),
    ({"captions": ["x" * 2001]}, None, 400, "limit is 2000"),
    ({}, {"image": ("e.png", b"", "image/png")}, 400, "e.png: empty file"),
    ({}, {"image": ("t.png", b"text, not pixels", "image/png")}, 400, "t.png: not a readable image"),
    *[({"captions": ["x"], "meta": line.meta}, None, 422, line.reason) for line in HOSTILE_META],
])
def test_bad_adds_are_refused_and_write_nothing(served: TestClient, data: dict[str, Any], files: Any, status: int,
                                                message: str) -> None:
    before = served.get("/api/health").json()["generation"]
    res = served.post("/api/items", data=data, files=files)
    assert res.status_code == status and message in res.json()["detail"], res.text
    assert "\n" not in res.json()["detail"] and len(res.json()["detail"]) < 400
    assert served.get("/api/health").json()["generation"] == before
    media = served.service.root / "media"  # type: ignore[attr-defined]
    assert not media.exists() or not any(media.iterdir())


def test_read_only(tmp_path: Path) -> None:
    svc = color_service(color_index(tmp_path), read_only=True)
    client = TestClient(create_app(svc), base_url=LOCAL)
    assert client.post("/api/items", data={"captions": ["x"]}).status_code == 403
    res = client.delete("/api/items/img/000.png")
    assert res.status_code == 403 and "read-only" in res.json()["detail"]
    assert client.get("/api/info").json()["read_only"] is True


def test_reads_continue_during_concurrent_adds_and_deletes(served: TestClient) -> None:
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            res = served.get("/api/search", params={"q": "blue", "k": 5, "mode": "hybrid"})
            if res.status_code != 200 or len(res.json()["results"]) != 5:
                errors.append(res.text)

    def writer(n: int) -> list[str]:
        acked = []
        for i in range(8):
            r = served.post("/api/items", files={"image": (f"{n}-{i}.png", png_bytes((10 * i, 20 * n, 200)), "image/png")},
                            data={"id": f"w{n}-{i}", "captions": [f"writer {n} item {i}"]})
            if r.status_code != 201:
                errors.append(r.text)
            acked.append(f"w{n}-{i}")
        return acked

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    results: dict[int, list[str]] = {}
    writers = [threading.Thread(target=lambda n=n: results.__setitem__(n, writer(n))) for n in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert served.delete("/api/items/w0-0").status_code == 200
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    svc = served.service  # type: ignore[attr-defined]
    idx = DenseIndex.open(svc.root)
    acked = {i for ids in results.values() for i in ids} - {"w0-0"}
    assert {it["id"] for it in idx.items()} >= acked and idx.item("w0-0") is None
    assert len(idx) == 12 + 31 and len(idx.manifest["segments"]) <= 8
    # group commit: 32 adds took fewer commits than adds would need one each (generation counts commits)
    assert idx.generation < 1 + 32 + 1 + 8


def test_reindexing_the_source_keeps_uploaded_items(tmp_path: Path) -> None:
    index = color_index(tmp_path)
    svc = color_service(index, refresh_seconds=0)
    client = TestClient(create_app(svc), base_url=LOCAL)
    assert client.post("/api/items", data={"captions": ["kept"], "id": "mine"}).status_code == 201
    # another process indexes a new source into it (one item fewer): the upload stays, the server sees it
    src = color_collection(tmp_path / "src2", 11)
    enc = ColorEncoder()
    report = build_index(scan_source(src), enc, index, BuildOptions(representation="both", replace_source=True),
                         sparse=DimensionSparseEncoder(enc.dim))
    assert report.removed == 1 and report.updated == 11  # same ids, other files; 'mine' is not the source's
    info = client.get("/api/info").json()
    assert info["counts"]["items"] == 12 and client.get("/api/items/mine").status_code == 200


def test_search_over_an_approximate_index_and_its_knobs(tmp_path: Path) -> None:
    """An index with an ANN structure answers the same API; nprobe/ef_search/exact reach it."""
    pytest.importorskip("faiss")
    from itr.index import IndexWriter
    from itr.index.ann import AnnPolicy
    from itr.testing import ColorEncoder

    index = color_index(tmp_path, n=120, repr_="dense")
    with IndexWriter(index, encoder=ColorEncoder().describe()) as w:
        w.build_ann(AnnPolicy(kind="ivf-flat", min_rows=100))
    svc = color_service(index)
    client = TestClient(create_app(svc), base_url=LOCAL)
    assert svc.searcher.index.segments[0].image_ann is not None
    answers = [client.get("/api/search", params={"q": "green", "k": 5, **extra})
               for extra in ({}, {"nprobe": 2}, {"exact": True}, {"ef_search": 64})]
    assert all(r.status_code == 200 for r in answers)
    scores = [[round(h["score"], 5) for h in r.json()["results"]] for r in answers]
    assert scores[1] == scores[2]  # nprobe = nlist (2): every list, so exact (equal-score squares may differ)
    assert all(h["meta"]["color"] == "green" for h in answers[0].json()["results"])
    assert client.get("/api/search", params={"q": "green", "nprobe": 0}).status_code == 422


def test_min_score_says_no_good_match(served: TestClient) -> None:
    from itr.calibration import Calibration, write_calibration

    res = served.get("/api/search", params={"q": "red", "k": 3})
    best = res.json()["results"][0]["score"]
    assert res.json()["no_good_match"] is False and res.json()["min_score"] is None
    res = served.get("/api/search", params={"q": "red", "k": 3, "min_score": f"{best + 0.05:.4f}"})
    body = res.json()
    assert res.status_code == 200 and body["results"] == [] and body["no_good_match"] is True
    assert body["best_score"] == pytest.approx(best, abs=1e-4)
    # auto: the calibrated threshold, or a clear error naming the command that makes one.
    res = served.get("/api/search", params={"q": "red", "min_score": "auto"})
    assert res.status_code == 400 and "itr calibrate" in res.json()["detail"]
    svc = served.service  # type: ignore[attr-defined]
    enc = svc.searcher.encoder
    write_calibration(svc.root, Calibration(threshold=0.0, target_precision=0.9, precision=1.0, coverage=1.0,
                                            queries=1, model_fingerprint=enc.fingerprint, model=enc.spec,
                                            dataset="x", reached_target=True))
    res = served.get("/api/search", params={"q": "red", "k": 3, "min_score": "auto"})
    assert res.status_code == 200 and res.json()["min_score"] == 0.0 and res.json()["results"]
    for bad in ("lots", "1e9999", "0.5; DROP"):
        assert served.get("/api/search", params={"q": "red", "min_score": bad}).status_code == 422
