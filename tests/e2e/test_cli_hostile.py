"""The CLI against the adversarial corpus (tests/hostile.py), with the real built-in model: bad
images and lines cost one item each, output stays valid JSON, killed commits resume, a busy lock
is waited for, and another source is never indexed over an index silently."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli
from hostile import NON_UTF8_ID, strict_json, write_hostile_images, write_hostile_jsonl

pytestmark = pytest.mark.builtin
itr = run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], Path]:
    root = tmp_path_factory.mktemp("hostile-cli")
    cases = write_hostile_images(root / "photos")
    code, stdout, stderr = itr("index", root / "photos", "--out", root / "index", "--json")
    assert code == 0, stderr
    return root, cases, root / "index"


def test_bad_images_cost_one_item_each(corpus: tuple[Path, list[Any], Path]) -> None:
    root, cases, index = corpus
    report = json.loads(itr("index", root / "photos", "--out", index, "--json")[1])
    assert report["unchanged"] == sum(c.ok for c in cases)
    failures = report["failures"]
    assert len(failures) == sum(not c.ok for c in cases)
    for case in cases:
        if not case.ok:
            line = next(f for f in failures if case.name in f)
            assert case.reason in line and "\n" not in line, line
    assert "raise --max-pixels to index it" in next(f for f in failures if "bomb.png" in f)


def test_search_json_is_always_valid(corpus: tuple[Path, list[Any], Path]) -> None:
    _, cases, index = corpus
    code, stdout, stderr = itr("search", index, "a green square", "-k", "20", "--json")
    assert code == 0, stderr
    stdout.encode("utf-8")  # no raw bytes of non-UTF-8 names
    payload = strict_json(stdout)
    assert isinstance(payload, dict)
    ids = {r["id"] for r in payload["results"]}
    assert ids == {c.name for c in cases if c.ok} and NON_UTF8_ID in ids
    code, stdout, _ = itr("search", index, "--image", corpus[0] / "photos" / "wide-60000x1.png", "-k", "1", "--json")
    top = strict_json(stdout)["results"][0]  # type: ignore[index]
    assert code == 0 and top["id"].startswith("wide-") and top["score"] > 0.99  # the same colour, any width


def test_hostile_jsonl_lines_are_listed_and_skipped(tmp_path: Path) -> None:
    src = write_hostile_jsonl(tmp_path)
    code, stdout, stderr = itr("index", src.jsonl, "--out", tmp_path / "index", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["added"] == len(src.ok_ids) and len(report["failures"]) == len(src.bad_lines)
    for n, reason in src.bad_lines.items():
        assert any(f"hostile.jsonl:{n}: " in f and reason in f for f in report["failures"]), (n, reason)
    code, _, stderr = itr("index", src.jsonl, "--out", tmp_path / "stop", "--on-error", "stop")
    assert code == 2 and "hostile.jsonl:2:" in stderr and "Traceback" not in stderr


def test_another_source_needs_replace_source(corpus: tuple[Path, list[Any], Path], tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(corpus[2], index)
    other = write_hostile_jsonl(tmp_path / "other")
    code, _, stderr = itr("index", other.jsonl, "--out", index, "--quiet")
    assert code == 2 and "--replace-source" in stderr and len(stderr.strip().splitlines()) == 1
    info = json.loads(itr("info", index, "--json")[1])
    assert info["counts"]["items"] == sum(c.ok for c in corpus[1]) and info["source"].endswith("photos")
    code, stdout, stderr = itr("index", other.jsonl, "--out", index, "--replace-source", "--json")
    assert code == 0, stderr
    info = json.loads(itr("info", index, "--json")[1])
    assert info["counts"]["items"] == len(other.ok_ids) and info["source"] == str(other.jsonl)


def test_leftovers_of_a_killed_first_commit_do_not_block_the_next_run(tmp_path: Path) -> None:
    src = write_hostile_jsonl(tmp_path / "src")
    out = tmp_path / "X"
    (out / "segments").mkdir(parents=True)
    (out / ".lock").touch()
    (out / ".manifest.json.abcd1234.tmp").write_text('{"format": "itr-in')
    code, stdout, stderr = itr("index", src.jsonl, "--out", out, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["added"] == len(src.ok_ids) and not (out / ".manifest.json.abcd1234.tmp").exists()


def test_index_waits_for_a_writer_that_commits_in_bursts(corpus: tuple[Path, list[Any], Path], tmp_path: Path) -> None:
    """A server commits uploads every few hundred ms; itr index takes the lock between its commits."""
    from itr.index import IndexWriter
    from itr.index.manifest import read_manifest

    src = write_hostile_jsonl(tmp_path / "src")
    out = tmp_path / "index"
    assert itr("index", src.jsonl, "--out", out, "--quiet")[0] == 0
    src.jsonl.write_text(src.jsonl.read_text().replace("a red square", "a crimson square"))
    encoder = read_manifest(out)["encoder"]
    stop = threading.Event()
    bursts = [0]

    def server_like() -> None:
        while not stop.is_set():
            with IndexWriter(out, encoder=encoder, lock_timeout=30):
                bursts[0] += 1
                time.sleep(0.15)  # a group commit
            time.sleep(0.1)

    t = threading.Thread(target=server_like)
    t.start()
    try:
        time.sleep(0.05)
        code, stdout, stderr = itr("index", src.jsonl, "--out", out, "--json", "--lock-timeout", "30")
    finally:
        stop.set()
        t.join()
    assert code == 0, stderr
    assert json.loads(stdout)["updated"] == 1 and bursts[0] >= 1

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with IndexWriter(out, encoder=encoder):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        code, _, stderr = itr("index", src.jsonl, "--out", out, "--lock-timeout", "1")
    finally:
        release.set()
        t.join()
    assert code == 2 and "held it for 1 s" in stderr and "--lock-timeout" in stderr and "waiting up to 1 s" in stderr
