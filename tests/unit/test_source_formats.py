"""Webdataset shards (img2dataset's layout) and parquet/CSV tables as sources: scanned, indexed,
searched, re-indexed incrementally; a bad shard, member or row costs that item."""

from __future__ import annotations

import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import COLORS, add_tar_member, png_bytes, write_shards

from itr.collection import scan_source
from itr.errors import InputError
from itr.images import load_image, load_image_bytes
from itr.index import BuildOptions, DenseIndex, build_index
from itr.search import Searcher
from itr.source_formats import TableColumns
from itr.testing import ColorEncoder
from itr.thumbnails import ThumbnailCache


def test_shards_index_search_and_thumbnail(tmp_path: Path) -> None:
    spec = write_shards(tmp_path / "shards")
    scan = scan_source(spec)
    assert len(scan.items) == 8 and not scan.problems
    first = scan.items[0]
    assert first.id == "000000000" and first.captions == ("a red square",) and first.meta["width"] == 40
    assert first.image is not None and first.image.startswith("tar:")
    assert load_image(first.image).tobytes() == load_image_bytes(png_bytes("red"), "red.png").tobytes()  # from the shard
    enc = ColorEncoder()
    report = build_index(scan, enc, tmp_path / "idx", BuildOptions(checkpoint_every=3))
    assert report.added == 8 and not report.failed
    hit = Searcher(enc, DenseIndex.open(tmp_path / "idx")).search_text("a blue square", k=1)[0]
    assert hit.caption == "a blue square" and hit.path is not None and hit.path.startswith("tar:")
    thumb = ThumbnailCache(tmp_path / "thumbs").get(hit.path, 64)
    assert thumb.data[:2] == b"\xff\xd8"  # a JPEG thumbnail of a shard member
    again = build_index(scan_source(spec), enc, tmp_path / "idx", BuildOptions())
    assert again.unchanged == 8 and again.images_encoded == 0  # nothing re-encoded


def test_a_bad_shard_or_member_costs_that_item(tmp_path: Path) -> None:
    spec = write_shards(tmp_path / "shards", n_shards=3)
    (tmp_path / "shards" / "00001.tar").write_bytes(b"not a tar at all" * 100)
    with tarfile.open(tmp_path / "shards" / "00002.tar", "a") as tar:
        add_tar_member(tar, "broken.png", b"\x89PNG not really")
        add_tar_member(tar, "orphan.json", b"{not json")
    scan = scan_source(spec)
    assert len(scan.items) == 9  # shard 0 (4), shard 2 (4 + the broken image, found at encode time)
    assert any("00001.tar: not a readable tar shard" in p for p in scan.problems)
    assert any("orphan" in p for p in scan.problems)
    report = build_index(scan, ColorEncoder(), tmp_path / "idx", BuildOptions())
    assert report.added == 8 and any("broken.png" in f for f in report.failed)
    with pytest.raises(InputError, match="stopped: --on-error stop"):
        from itr.collection import OnError

        scan_source(spec, on_error=OnError.STOP)


class _Images(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # /red.png -> a red PNG; anything else 404
        name = self.path.strip("/").removesuffix(".png")
        if name not in COLORS:
            self.send_error(404)
            return
        data = png_bytes(name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_parquet_and_csv_tables_with_paths_and_urls(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        (tmp_path / "img").mkdir()
        (tmp_path / "img" / "g.png").write_bytes(png_bytes("green"))
        pq.write_table(pa.table({
            "url": [f"{url}/red.png", "img/g.png", f"{url}/blue.png", f"{url}/missing.png", "img/none.png"],
            "caption": [["a red square", "crimson"], ["a green square"], ["a blue square"], ["gone"], ["x"]],
            "key": ["r", "g", "b", "m", "n"], "width": [40, 40, 40, 40, 40]}), tmp_path / "t.parquet")
        scan = scan_source(tmp_path / "t.parquet")
        assert [i.id for i in scan.items] == ["r", "g", "b", "m"] and "none.png cannot be read" in scan.problems[0]
        assert scan.items[0].captions == ("a red square", "crimson") and scan.items[0].meta == {"width": 40}
        enc = ColorEncoder()
        report = build_index(scan, enc, tmp_path / "idx", BuildOptions())
        assert report.added == 3 and len(report.failed) == 2 and "missing.png: cannot download (Not Found)" in report.failed[1]
        hit = Searcher(enc, DenseIndex.open(tmp_path / "idx")).search_text("a red square", k=1)[0]
        assert hit.id == "r"
    finally:
        server.shutdown()
        server.server_close()
    (tmp_path / "t.csv").write_text("picture,words\nimg/g.png,a green square\n,only text here\n")
    with pytest.raises(InputError, match="no image column.*--image-col"):
        scan_source(tmp_path / "t.csv")
    scan = scan_source(tmp_path / "t.csv", columns=TableColumns(image="picture", caption="words"))
    assert [(i.id, i.captions) for i in scan.items] == [("img/g.png", ("a green square",)), ("row-2", ("only text here",))]
    with pytest.raises(InputError, match="no column 'nope'"):
        scan_source(tmp_path / "t.csv", columns=TableColumns(image="nope"))
