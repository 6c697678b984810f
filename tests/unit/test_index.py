from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from itr.collection import OnError, scan_source
from itr.errors import IncompatibleIndexError, IndexLockedError, InputError
from itr.index import BuildOptions, DenseIndex, IndexWriter, build_index
from itr.search import Searcher
from itr.testing import ColorEncoder, random_unit_vectors, solid_image
from itr.types import Target


def _assert_counts_consistent(idx: DenseIndex) -> None:
    items = list(idx.items())
    recount = {"items": len(items), "images": sum(it["row"] is not None for it in items),
               "texts": sum(it["captions"] for it in items)}
    assert idx.counts == recount


def _build(src: Path, out: Path, enc: ColorEncoder, **opts: object):
    return build_index(scan_source(src), enc, out, BuildOptions(**opts))  # type: ignore[arg-type]


def test_round_trip_and_search_both_directions(color_jsonl: Path, tmp_path: Path, color_encoder: ColorEncoder) -> None:
    out = tmp_path / "idx"
    report = _build(color_jsonl, out, color_encoder)
    assert report.counts == {"items": 3, "images": 3, "texts": 4} and report.added == 3 and not report.failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["encoder"]["fingerprint"] == color_encoder.fingerprint
    # arrays load without pickle
    for npy in out.rglob("*.npy"):
        assert np.load(npy, allow_pickle=False).dtype == np.float32
    s = Searcher(color_encoder, DenseIndex.open(out))
    hits = s.search_text("green", k=3)
    assert [h.id for h in hits][0] == "g" and hits[0].path and hits[0].path.endswith("g.png")
    assert hits[0].caption == "a green square" and hits[0].to_dict()["caption"] == "a green square"
    assert hits[0].score >= hits[1].score >= hits[2].score
    texts = s.search_image(color_jsonl.parent / "img" / "r.png", k=2, target=Target.TEXTS)
    assert texts[0].item_id == "r" and texts[0].text in ("a red square", "crimson tile")
    assert texts[0].meta == {"n": 1}
    same = s.search_image(color_jsonl.parent / "img" / "b.png", k=1)
    assert same[0].id == "img/b.png"


def test_exact_search_matches_brute_force(tmp_path: Path) -> None:
    dim = 12
    vecs = random_unit_vectors(300, dim, seed=1)
    with IndexWriter(tmp_path / "i", encoder={"spec": "x", "fingerprint": "f", "dim": dim}) as w:
        for part in range(3):  # three segments, one deletion: the merge across segments is exercised
            rows = range(part * 100, part * 100 + 100)
            items = [{"id": f"i{r}", "image": f"/x/{r}.png", "row": r - part * 100, "signature": "s",
                      "meta": {}, "captions": 0} for r in rows]
            w.add_segment(items, vecs[part * 100: part * 100 + 100], [], np.zeros((0, dim), np.float32))
        w.delete("seg-000002", ["i150"])
        w.commit()
    idx = DenseIndex.open(tmp_path / "i")
    queries = random_unit_vectors(5, dim, seed=2)
    got = idx.search(queries, k=10)
    scores = queries @ vecs.T
    scores[:, 150] = -np.inf
    for qi, hits in enumerate(got):
        expected = [f"i{j}" for j in np.argsort(-scores[qi], kind="stable")[:10]]
        assert [h.id for h in hits] == expected
        assert np.allclose([h.score for h in hits], np.sort(scores[qi])[::-1][:10], atol=1e-6)


def test_ties_break_by_insertion_order(tmp_path: Path) -> None:
    v = np.tile(random_unit_vectors(1, 4), (6, 1))
    with IndexWriter(tmp_path / "i", encoder={"spec": "x", "fingerprint": "f", "dim": 4}) as w:
        items = [{"id": f"i{r}", "image": None, "row": r, "signature": "", "meta": {}, "captions": 0} for r in range(6)]
        w.add_segment(items, v, [], np.zeros((0, 4), np.float32))
        w.commit()
    hits = DenseIndex.open(tmp_path / "i").search(v[:1], k=4)[0]
    assert [h.id for h in hits] == ["i0", "i1", "i2", "i3"]


def test_incremental_reindex(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    enc = ColorEncoder()
    first = _build(color_folder, out, enc)
    assert (first.added, enc.images_encoded) == (3, 3)
    again = _build(color_folder, out, enc)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 3)
    assert enc.images_encoded == 3  # nothing re-encoded
    (color_folder / "red.png").unlink()
    solid_image(color_folder / "new" / "yellow.png", "yellow")
    solid_image(color_folder / "green.jpg", "blue", size=(60, 50))  # changed content and size
    third = _build(color_folder, out, enc)
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, 1)
    assert enc.images_encoded == 5
    idx = DenseIndex.open(out)
    assert sorted(it["id"] for it in idx.items()) == ["green.jpg", "new/yellow.png", "sub/blue.webp"]
    assert len(idx) == 3
    _assert_counts_consistent(idx)
    hits = Searcher(enc, idx).search_text("blue", k=3)
    assert {h.id for h in hits[:2]} == {"green.jpg", "sub/blue.webp"}
    assert "red.png" not in {h.id for h in hits}


def _rgb_folder(src: Path, n: int) -> Path:
    """n images 00.png, 01.png, ... cycling red, green, blue."""
    for i in range(n):
        solid_image(src / f"{i:02d}.png", ("red", "green", "blue")[i % 3])
    return src


class _Interrupt(Exception):
    pass


def test_interrupted_run_leaves_loadable_index_and_resumes(tmp_path: Path) -> None:
    src = _rgb_folder(tmp_path / "src", 10)
    out = tmp_path / "idx"
    enc = ColorEncoder()

    def stop_after_two_checkpoints(done: int, total: int) -> None:
        if done >= 6:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        build_index(scan_source(src), enc, out, BuildOptions(checkpoint_every=3), progress=stop_after_two_checkpoints)
    idx = DenseIndex.open(out)
    assert len(idx) == 6 and idx.manifest["complete"] is False
    assert enc.images_encoded == 6
    report = build_index(scan_source(src), enc, out, BuildOptions(checkpoint_every=3))
    assert (report.added, report.unchanged) == (4, 6)
    assert enc.images_encoded == 10  # only the rest was encoded
    idx = DenseIndex.open(out)
    assert len(idx) == 10 and idx.manifest["complete"] is True


def test_crash_between_segment_write_and_commit_keeps_last_commit(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(color_folder, out, ColorEncoder())
    before = (out / "manifest.json").read_bytes()
    with IndexWriter(out, encoder=ColorEncoder().describe()) as w:
        w.add_segment([{"id": "zz", "image": None, "row": None, "signature": "", "meta": {}, "captions": 0}],
                      np.zeros((0, 16), np.float32), [], np.zeros((0, 16), np.float32))
        # no commit: as if the process died here
    assert (out / "manifest.json").read_bytes() == before
    assert len(DenseIndex.open(out)) == 3
    _build(color_folder, out, ColorEncoder())  # the next writer removes the orphan segment
    assert sorted(p.name for p in (out / "segments").iterdir()) == ["seg-000001"]


def test_other_model_refused_and_index_untouched(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(color_folder, out, ColorEncoder())
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = ColorEncoder(salt="other")
    with pytest.raises(IncompatibleIndexError, match="built with model 'test:color'.*--rebuild"):
        _build(color_folder, out, other)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    with pytest.raises(IncompatibleIndexError, match="built with model"):
        Searcher(other, DenseIndex.open(out))
    report = _build(color_folder, out, other, rebuild=True)
    assert report.added == 3 and DenseIndex.open(out).encoder_info["fingerprint"] == other.fingerprint


def test_format_version_and_non_index_folders(color_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(color_folder, out, ColorEncoder())
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IncompatibleIndexError, match="format version 99.*upgrade ITR"):
        DenseIndex.open(out)
    with pytest.raises(InputError, match="no such index"):
        DenseIndex.open(tmp_path / "nothing")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "f.txt").write_text("x")
    with pytest.raises(InputError, match="not an ITR index"):
        DenseIndex.open(tmp_path / "stuff")
    with pytest.raises(InputError, match="not empty"):
        _build(color_folder, tmp_path / "stuff", ColorEncoder())


def test_bad_images_are_reported_not_fatal(color_folder: Path, tmp_path: Path) -> None:
    (color_folder / "empty.png").write_bytes(b"")
    (color_folder / "fake.jpg").write_text("plain text")
    report = _build(color_folder, tmp_path / "idx", ColorEncoder())
    assert report.added == 3 and len(report.failed) == 2
    assert any("empty.png: empty file" in f for f in report.failed)
    assert any("fake.jpg: not a readable image" in f for f in report.failed)
    with pytest.raises(InputError, match="empty.png: empty file.*--on-error stop"):
        _build(color_folder, tmp_path / "idx2", ColorEncoder(), on_error=OnError.STOP)


def test_compaction_keeps_results(tmp_path: Path) -> None:
    src = _rgb_folder(tmp_path / "src", 12)
    out = tmp_path / "idx"
    enc = ColorEncoder()
    build_index(scan_source(src), enc, out, BuildOptions(checkpoint_every=1))  # 12 segments -> merged
    idx = DenseIndex.open(out)
    # tiered: the 9 smallest of 12 segments merge into one, leaving 4 (never more than 8)
    assert len(idx.manifest["segments"]) == 4 and len(idx) == 12 and idx.counts["images"] == 12
    for i in range(0, 12, 2):
        (src / f"{i:02d}.png").unlink()
    build_index(scan_source(src), enc, out, BuildOptions())  # 50% deleted -> compacted
    idx = DenseIndex.open(out)
    assert idx.manifest["tombstones"] is None and len(idx) == 6
    _assert_counts_consistent(idx)
    hits = Searcher(enc, idx).search_text("green", k=6)
    assert {h.id for h in hits[:2]} == {"01.png", "07.png"}


def test_writer_lock(tmp_path: Path) -> None:
    enc = {"spec": "x", "fingerprint": "f", "dim": 4}
    with IndexWriter(tmp_path / "i", encoder=enc), pytest.raises(IndexLockedError, match="another process"):
        with IndexWriter(tmp_path / "i", encoder=enc):
            pass


def test_text_only_items_and_empty_query(color_jsonl: Path, tmp_path: Path) -> None:
    with open(color_jsonl, "a") as fh:
        fh.write('{"captions": ["yellow note"], "id": "note"}\n')
    out = tmp_path / "idx"
    report = _build(color_jsonl, out, ColorEncoder())
    assert report.counts == {"items": 4, "images": 3, "texts": 5}
    _assert_counts_consistent(DenseIndex.open(out))
    color_jsonl.write_text(color_jsonl.read_text().replace("a green square", "a lime square"))
    _build(color_jsonl, out, ColorEncoder())  # one item changed: deleted and re-added
    _assert_counts_consistent(DenseIndex.open(out))
    s = Searcher(ColorEncoder(), DenseIndex.open(out))
    assert s.search_text("yellow", k=1, target=Target.TEXTS)[0].id == "note#0"
    assert "note" not in {h.id for h in s.search_text("yellow", k=10)}
    for bad in ("", "   "):
        with pytest.raises(InputError, match="query is empty"):
            s.search_text(bad)
    with pytest.raises(InputError, match="k must be"):
        s.search_text("red", k=0)


def test_index_survives_copy(color_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(color_jsonl, out, ColorEncoder())
    shutil.copytree(out, tmp_path / "copy")
    assert len(DenseIndex.open(tmp_path / "copy")) == 3


def test_writer_itself_refuses_another_encoder(tmp_path: Path) -> None:
    with IndexWriter(tmp_path / "i", encoder={"spec": "a", "fingerprint": "fa", "dim": 4}) as w:
        w.commit()
    with pytest.raises(IncompatibleIndexError, match="built with model 'a'"):
        with IndexWriter(tmp_path / "i", encoder={"spec": "b", "fingerprint": "fb", "dim": 4}):
            pass
    with IndexWriter(tmp_path / "i", encoder={"spec": "b", "fingerprint": "fb", "dim": 4}, reset=True) as w:
        w.commit()
    assert DenseIndex.open(tmp_path / "i").encoder_info["spec"] == "b"


def test_tiered_merge_leaves_the_large_segment_alone(tmp_path: Path) -> None:
    src = _rgb_folder(tmp_path / "src", 30)
    out = tmp_path / "idx"
    enc = ColorEncoder()
    names = sorted(p.name for p in src.iterdir())
    for p in names[20:]:
        (src / p).rename(tmp_path / p)
    build_index(scan_source(src), enc, out, BuildOptions())
    big = DenseIndex.open(out).manifest["segments"][0]["name"]
    before = Searcher(enc, DenseIndex.open(out)).search_text("red", k=5)
    for p in names[20:]:  # ten small additions, one commit each
        (tmp_path / p).rename(src / p)
        build_index(scan_source(src), enc, out, BuildOptions())
    idx = DenseIndex.open(out)
    segs = [s["name"] for s in idx.manifest["segments"]]
    assert big in segs and len(segs) <= 8 and len(idx) == 30 and idx.counts["images"] == 30
    _assert_counts_consistent(idx)
    after = Searcher(enc, idx).search_text("red", k=30)
    assert {h.id for h in before} <= {h.id for h in after}
