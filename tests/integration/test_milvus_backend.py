"""The Milvus back end against a real Milvus Lite: in process (a ``.db`` file) and as a separate
``milvus-lite server`` process spoken to over gRPC, the client path a Milvus cluster takes.

Every search through Milvus is checked against the same index folder searched by ITR itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import LOCAL, free_port

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("scipy")

from itr.backends.milvus import (  # noqa: E402
    BackendUnavailableError,
    MilvusAddress,
    MilvusIndex,
    RetryPolicy,
)
from itr.backends.milvus_export import export_to_milvus  # noqa: E402
from itr.collection import scan_source  # noqa: E402
from itr.errors import IncompatibleIndexError, InputError, NotFoundError, ReadOnlyError  # noqa: E402
from itr.index import BuildOptions, build_index  # noqa: E402
from itr.index.store import DenseIndex  # noqa: E402
from itr.search import Fusion, Mode, Searcher, SearchOptions  # noqa: E402
from itr.testing import ColorEncoder, DimensionSparseEncoder, solid_image  # noqa: E402
from itr.types import Target  # noqa: E402

FAST_RETRY = RetryPolicy(attempts=3, first_delay=0.05, max_delay=0.1)


def _collection(root: Path, n: int = 30) -> Path:
    """n images of distinct random colours (no tied scores), each with one or two captions."""
    rng = np.random.default_rng(5)
    lines = []
    for i in range(n):
        rgb = tuple(int(x) for x in rng.integers(0, 256, 3))
        solid_image(root / f"{i}.png", rgb)  # type: ignore[arg-type]
        word = ["red", "green", "blue", "yellow"][i % 4]
        caps = [f"{word} thing {i}"] + ([f"a {word} {i} square"] if i % 3 == 0 else [])
        lines.append(json.dumps({"id": f"i{i}", "image": f"{i}.png", "captions": caps, "meta": {"n": i}}))
    lines.append(json.dumps({"id": "note", "captions": ["a text-only green note"]}))  # no image
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    return root / "items.jsonl"


def _index(src: Path, out: Path, **opts: object) -> Path:
    enc = ColorEncoder()
    build_index(scan_source(src), enc, out, BuildOptions(representation="both", **opts),  # type: ignore[arg-type]
                sparse=DimensionSparseEncoder(enc.dim))
    return out


def _searchers(index: Path, to: str) -> tuple[Searcher, Searcher]:
    enc, sparse = ColorEncoder(), DimensionSparseEncoder(ColorEncoder.dim)
    return Searcher(enc, DenseIndex.open(index), sparse), Searcher(enc, MilvusIndex.open(to), sparse)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, str]:
    index = _index(_collection(tmp_path / "c"), tmp_path / "idx", checkpoint_every=7)  # several segments
    to = f"milvus:{tmp_path / 'm.db'}#photos"
    report = export_to_milvus(index, to, dense_index="FLAT", batch_size=8)
    assert report.written == report.items == 31 and not report.skipped
    return index, to


def _same(folder: list, milvus: list, all_scores: dict[str, float]) -> None:
    """Same ranking as the folder: equal score lists, and each Milvus hit has its folder score."""
    assert len(milvus) == len(folder)
    np.testing.assert_allclose([h.score for h in milvus], [h.score for h in folder], rtol=1e-4, atol=1e-5)
    for h in milvus:
        assert h.score == pytest.approx(all_scores[h.id], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("target", [Target.IMAGES, Target.TEXTS])
def test_dense_sparse_and_hybrid_search_equal_the_index_folder(exported: tuple[Path, str], target: Target,
                                                                 tmp_path: Path) -> None:
    index, to = exported
    folder, milvus = _searchers(index, to)
    assert milvus.index.counts == folder.index.counts
    for query in ("red", "blue thing", "green"):
        for mode in (Mode.DENSE, Mode.SPARSE, Mode.HYBRID):
            everything = folder.query_texts([query], SearchOptions(k=100, target=target, mode=mode))[0].hits
            scores = {h.id: h.score for h in everything}
            f = folder.query_texts([query], SearchOptions(k=5, target=target, mode=mode))[0]
            m = milvus.query_texts([query], SearchOptions(k=5, target=target, mode=mode))[0]
            assert m.mode is f.mode
            _same(f.hits, m.hits, scores)
            for a, b in zip(f.hits, m.hits, strict=True):
                if a.id == b.id:  # what a hit shows comes back from Milvus
                    assert (b.kind, b.item_id, b.path, b.text, b.caption, b.meta) == (
                        a.kind, a.item_id, a.path, a.text, a.caption, a.meta)
    # Milvus's own hybrid_search: RRF ranks like ITR's RRF over the same two lists.
    for fusion in (Fusion.RRF, Fusion.WEIGHTED):
        o = SearchOptions(k=5, target=target, mode=Mode.HYBRID, fusion=fusion, candidates=50)
        m = milvus.query_texts(["blue thing"], o)[0].hits
        f = folder.query_texts(["blue thing"], o)[0].hits
        assert len(m) == 5 and (np.diff([h.score for h in m]) <= 1e-9).all()
        if fusion is Fusion.RRF:
            assert m[0].id == f[0].id
    # explain: the matched terms come from the sparse vectors stored in Milvus
    o = SearchOptions(k=3, target=target, mode=Mode.SPARSE, explain=True)
    f, m = folder.query_texts(["yellow"], o)[0].hits, milvus.query_texts(["yellow"], o)[0].hits
    for a, b in zip(f, m, strict=True):
        assert dict(a.terms or []) == pytest.approx(dict(b.terms or []), rel=1e-4)
    # image queries (captions of one colour word tie: compare scores, not the order among ties)
    o = SearchOptions(k=3, target=target)
    everything = folder.query_image(tmp_path / "c" / "4.png", SearchOptions(k=100, target=target)).hits
    _same(folder.query_image(tmp_path / "c" / "4.png", o).hits, milvus.query_image(tmp_path / "c" / "4.png", o).hits,
          {h.id: h.score for h in everything})


def test_items_and_vectors_read_back(exported: tuple[Path, str]) -> None:
    index, to = exported
    folder, milvus = DenseIndex.open(index), MilvusIndex.open(to)
    for item_id in ("i0", "i3", "note"):
        a, b = folder.item(item_id), milvus.item(item_id)
        assert a is not None and b is not None
        assert (b["id"], b["image"], b["texts"], b["meta"]) == (a["id"], a["image"], a["texts"], a.get("meta", {}))
        va, vb = folder.item_vector(item_id), milvus.item_vector(item_id)
        assert va is not None and vb is not None and va[1] == vb[1]
        np.testing.assert_allclose(va[0], vb[0], rtol=1e-6)
    assert milvus.item("nope") is None and milvus.item_vector("nope") is None


def test_reexport_writes_only_changes_and_follows_deletions(exported: tuple[Path, str], tmp_path: Path) -> None:
    index, to = exported
    again = export_to_milvus(index, to)
    assert (again.written, again.unchanged, again.removed) == (0, 31, 0)
    # The source changes: item 2 is dropped, image 5 changes colour; the folder index follows it.
    src = tmp_path / "c" / "items.jsonl"
    src.write_text("".join(line for line in src.read_text().splitlines(True) if '"i2"' not in line))
    solid_image(tmp_path / "c" / "5.png", (1, 2, 3))
    _index(src, index)
    report = export_to_milvus(index, to)
    assert (report.written, report.unchanged, report.removed) == (1, 29, 1)
    folder, milvus = _searchers(index, to)
    assert milvus.index.item("i2") is None
    assert milvus.index.counts == folder.index.counts
    v = milvus.index.item_vector("i5")
    assert v is not None
    np.testing.assert_allclose(v[0], folder.index.item_vector("i5")[0], rtol=1e-6)  # type: ignore[index]
    hits = milvus.search_text("red", k=40, target=Target.TEXTS)
    assert "i2#0" not in {h.id for h in hits} and len(hits) == folder.index.counts["texts"]


def test_interrupted_export_is_refused_then_resumes(tmp_path: Path) -> None:
    index = _index(_collection(tmp_path / "c"), tmp_path / "idx")
    to = f"milvus:{tmp_path / 'm.db'}"

    def stop_after_two_batches(done: int, total: int) -> None:
        if done >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_to_milvus(index, to, batch_size=5, progress=stop_after_two_batches)
    with pytest.raises(IncompatibleIndexError, match="interrupted"):
        MilvusIndex.open(to)
    assert MilvusIndex.read_manifest(to)["complete"] is False  # what itr info shows, without loading
    report = export_to_milvus(index, to, batch_size=5)
    assert report.unchanged == 10 and report.written == 21
    _, milvus = _searchers(index, to)
    assert milvus.index.counts == {"items": 31, "images": 30, "texts": 41}
    assert len(milvus.search_text("blue", k=100)) == 30


def test_other_model_dimension_or_collection_is_refused(exported: tuple[Path, str], tmp_path: Path) -> None:
    index, to = exported
    other = tmp_path / "other"
    build_index(scan_source(_collection(tmp_path / "c2", n=6)), ColorEncoder(salt="x"), other,
                BuildOptions(representation="both"), sparse=DimensionSparseEncoder(ColorEncoder.dim))
    with pytest.raises(IncompatibleIndexError, match="another model"):
        export_to_milvus(other, to)
    # a searcher with another model than the export's
    with pytest.raises(IncompatibleIndexError, match="was built with model"):
        Searcher(ColorEncoder(salt="x"), MilvusIndex.open(to))
    # another dimension (an index of 8-d vectors written directly)
    from itr.index.writer import IndexWriter

    small = tmp_path / "dim8"
    with IndexWriter(small, encoder={"spec": "test:8d", "fingerprint": ColorEncoder().fingerprint, "dim": 8}) as w:
        w.add_segment([{"id": "a", "image": "a.png", "row": 0, "signature": "s", "meta": {}, "captions": 0}],
                      np.eye(1, 8, dtype=np.float32), [], np.zeros((0, 8), dtype=np.float32))
        w.commit()
    with pytest.raises(IncompatibleIndexError, match="dimension"):
        export_to_milvus(small, to)
    # --replace drops the old export and takes the new one
    report = export_to_milvus(other, to, replace=True)
    assert report.written == 7 and MilvusIndex.open(to).counts["items"] == 7
    # a collection that is not an ITR export
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "m.db"))
    client.create_collection("foreign_images", dimension=4)
    client.close()
    with pytest.raises(IncompatibleIndexError, match="not an ITR export"):
        MilvusIndex.open(f"milvus:{tmp_path / 'm.db'}#foreign")
    with pytest.raises(NotFoundError, match="no ITR export named 'missing'.*itr export"):
        MilvusIndex.open(f"milvus:{tmp_path / 'm.db'}#missing")


def test_bad_addresses_are_one_line_errors() -> None:
    for spec, msg in (("milvus:", "names no Milvus URI"), ("milvus:x.txt", "must end in .db"),
                      ("milvus:http://h:1#9bad", "cannot name Milvus collections"), ("qdrant:x", "not a Milvus")):
        with pytest.raises(InputError, match=msg):
            MilvusAddress.parse(spec)
    assert str(MilvusAddress.parse("milvus:http://h:19530#photos")) == "milvus:http://h:19530#photos"


def test_unreachable_server_is_retried_with_capped_backoff_then_one_line_error() -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=5, first_delay=0.1, max_delay=0.3)
    with pytest.raises(BackendUnavailableError) as info:
        MilvusIndex.open(f"milvus:http://127.0.0.1:{free_port()}", retry=policy, sleep=waits.append)
    assert waits == [0.1, 0.2, 0.3, 0.3]  # doubling, capped
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("cannot reach Milvus at http://127.0.0.1:") and "after 5 tries" in msg


def _start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite.cmdline", "server", "--data-dir", str(data),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"milvus-lite server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    pytest.fail("milvus-lite server did not start in 60 s")


def test_server_process_search_and_a_restart_ridden_over_by_retries(tmp_path: Path) -> None:
    """A Milvus server in another process, over gRPC (the cluster client path): export and search
    it; kill it (the searcher fails in one line after its retries); restart it while a search is
    retrying (the search succeeds, collections are re-loaded)."""
    index = _index(_collection(tmp_path / "c", n=12), tmp_path / "idx")
    port = free_port()
    data = tmp_path / "milvus-data"
    server = _start_server(data, port)
    try:
        to = f"milvus:http://127.0.0.1:{port}#photos"
        assert export_to_milvus(index, to, dense_index="FLAT").written == 13
        folder, milvus = _searchers(index, to)
        want = [h.id for h in folder.search_text("blue", k=5)]
        assert [h.id for h in milvus.search_text("blue", k=5)] == want
        assert [h.id for h in milvus.search_text("blue", k=5, mode="hybrid")] == [
            h.id for h in folder.search_text("blue", k=5, mode="hybrid")]
        server.kill()
        server.wait()
        milvus.index.conn.retry = FAST_RETRY
        with pytest.raises(BackendUnavailableError, match="cannot reach Milvus"):
            milvus.search_text("blue", k=5)
        milvus.index.conn.retry = RetryPolicy(attempts=40, first_delay=0.25, max_delay=0.5)
        restarted: list[subprocess.Popen[bytes]] = []
        timer = threading.Timer(1.0, lambda: restarted.append(_start_server(data, port)))
        timer.start()
        try:
            assert [h.id for h in milvus.search_text("blue", k=5)] == want
        finally:
            timer.join()
            server = restarted[0] if restarted else server
    finally:
        server.kill()
        server.wait()


def test_http_service_serves_an_export_read_only(exported: tuple[Path, str]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from itr.server import create_app
    from itr.service import IndexService, NewItem

    index, to = exported
    service = IndexService(to, ColorEncoder(), DimensionSparseEncoder(ColorEncoder.dim))
    try:
        assert service.read_only
        with pytest.raises(ReadOnlyError, match="itr export"):
            service.add(NewItem(captions=("x",)))
        client = TestClient(create_app(service), base_url=LOCAL)
        info = client.get("/api/info").json()
        assert info["backend"] == "milvus" and info["counts"]["items"] == 31 and "hybrid" in info["modes"]
        folder = Searcher(ColorEncoder(), DenseIndex.open(index)).search_text("green", k=3)
        got = client.get("/api/search", params={"q": "green", "k": 3}).json()
        assert [r["id"] for r in got["results"]] == [h.id for h in folder]
        assert client.get(f"/api/items/{folder[0].id}").json()["captions"]
        assert client.get(f"/api/items/{folder[0].id}/thumbnail").status_code == 200
        assert client.get("/api/search", params={"q": "green", "k": 3, "mode": "sparse"}).status_code == 200
        assert client.post("/api/items", data={"captions": "x"}).status_code == 403
    finally:
        service.close()
