"""The CLI end to end with the real built-in model on real emoji images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import require_emoji_data, run_cli

from itr.testing import solid_image

pytestmark = pytest.mark.builtin
itr = run_cli


@pytest.fixture(scope="module")
def emoji_index(emoji_jsonl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    code, stdout, stderr = itr("index", emoji_jsonl, "--out", out, "--quiet")
    assert code == 0, stderr
    return out


def test_index_info_and_reindex(emoji_jsonl: Path, emoji_index: Path) -> None:
    code, stdout, _ = itr("info", emoji_index, "--json")
    info = json.loads(stdout)
    assert code == 0 and info["model"] == "builtin" and info["format_version"] == 2 and info["complete"]
    assert info["counts"]["images"] > 80 and info["counts"]["texts"] >= info["counts"]["images"]
    code, stdout, _ = itr("index", emoji_jsonl, "--out", emoji_index, "--json")
    report = json.loads(stdout)
    assert report["added"] == 0 and report["unchanged"] == info["counts"]["items"] and report["images_encoded"] == 0


def test_text_to_image_search_json_and_table(emoji_index: Path) -> None:
    code, stdout, _ = itr("search", emoji_index, "a watch", "-k", "3", "--json")
    payload = json.loads(stdout)
    assert code == 0 and payload["query"] == "a watch" and len(payload["results"]) == 3
    first = payload["results"][0]
    assert set(first) >= {"id", "score", "path", "caption"} and Path(first["path"]).exists()
    assert [r["score"] for r in payload["results"]] == sorted((r["score"] for r in payload["results"]), reverse=True)
    code, stdout, _ = itr("search", emoji_index, "a watch", "-k", "2")
    assert code == 0 and "score" in stdout and first["id"] in stdout and first["caption"].split()[0] in stdout


def test_image_to_text_and_image_to_image(emoji_index: Path, emoji_jsonl: Path) -> None:
    line = json.loads(emoji_jsonl.read_text().splitlines()[5])
    image = emoji_jsonl.parent / line["image"]
    code, stdout, _ = itr("search", emoji_index, "--image", image, "--target", "texts", "-k", "5", "--json")
    results = json.loads(stdout)["results"]
    assert code == 0 and len(results) == 5 and all("text" in r for r in results)
    code, stdout, _ = itr("search", emoji_index, "--image", image, "-k", "1", "--json")
    assert json.loads(stdout)["results"][0]["id"] == line["id"]  # an image finds itself first


@pytest.mark.parametrize("args,message", [
    (["search", "{index}", ""], "query is empty"),
    (["search", "{index}", "x", "--target", "videos"], "--target must be one of: images, texts"),
    (["search", "{index}", "--image", "{tmp}/none.png"], "no such image file"),
    (["search", "{tmp}/noindex", "dog"], "no such index"),
    (["index", "{tmp}/missing", "--out", "{tmp}/o"], "no such file or folder"),
    (["index", "{tmp}", "--out", "{tmp}/o2"], "no images found"),
    (["index", "{tmp}", "--out", "{tmp}/o3", "--model", "clip-xl"], "unknown model 'clip-xl'"),
    (["index", "{tmp}", "--out", "{tmp}/o3", "--on-error", "maybe"], "--on-error must be one of"),
    (["search", "{index}", "dog", "--model", "builtin:nope"], "unknown built-in model"),
    (["index", "{tmp}", "--out", "{tmp}/o4", "--engine", "spark"], "--engine must be 'local' or 'ray'"),
    (["index", "{tmp}", "--out", "{tmp}/o4", "--ray-address", "h:1"], "--ray-address needs --engine ray"),
    (["index", "{tmp}", "--out", "{tmp}/o4", "--max-memory", "lots"], "--max-memory 'lots' is not a size"),
    (["index", "{tmp}", "--out", "{tmp}/o4", "--index", "hnsw", "--repr", "sparse"], "--repr sparse keeps none"),
])
def test_bad_input_one_line_errors(args: list[str], message: str, emoji_index: Path, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    if "unknown model" in message:
        solid_image(tmp_path / "a.png", "red")
    full = [a.format(index=emoji_index, tmp=tmp_path) for a in args]
    code, stdout, stderr = itr(*full)
    assert code == 2, (stdout, stderr)
    assert message in stderr and "Traceback" not in stderr + stdout
    assert len(stderr.strip().splitlines()) == 1


def test_bad_items_summarised_and_index_still_built(tmp_path: Path) -> None:
    src = tmp_path / "src"
    solid_image(src / "ok.png", "red")
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.png").write_text("not a png")
    code, stdout, stderr = itr("index", src, "--out", tmp_path / "idx", "--quiet")
    assert code == 0 and "1 images" in stdout
    assert "2 item(s) skipped" in stderr and "zero.jpg: empty file" in stderr and "text.png" in stderr
    code, _, stderr = itr("index", src, "--out", tmp_path / "idx2", "--quiet", "--on-error", "stop")
    assert code == 2 and "stopped: --on-error stop" in stderr


def test_malformed_jsonl_line_reported(tmp_path: Path) -> None:
    solid_image(tmp_path / "a.png", "red")
    (tmp_path / "d.jsonl").write_text('{"image": "a.png", "captions": ["red"]}\n{oops\n')
    code, stdout, stderr = itr("index", tmp_path / "d.jsonl", "--out", tmp_path / "idx", "--quiet")
    assert code == 0 and "d.jsonl:2: not valid JSON" in stderr
    code, _, stderr = itr("index", tmp_path / "d.jsonl", "--out", tmp_path / "idx2", "--on-error", "stop")
    assert code == 2 and "d.jsonl:2" in stderr


def test_other_model_refused_by_cli(emoji_index: Path, tmp_path: Path) -> None:
    from helpers import save_tiny_checkpoint

    tiny = save_tiny_checkpoint("clip", tmp_path / "tiny")
    code, _, stderr = itr("search", emoji_index, "dog", "--model", f"local:{tiny}")
    assert code == 2 and "was built with model 'builtin'" in stderr


def test_kill_9_mid_index_then_resume(tmp_path: Path) -> None:
    """A real process killed with SIGKILL between checkpoints leaves a loadable index; the re-run resumes."""
    src = tmp_path / "src"
    colors = [(r, g, 90) for r in range(0, 250, 25) for g in range(0, 250, 50)]  # 50 distinct images
    for i, c in enumerate(colors):
        solid_image(src / f"{i:03d}.jpg", c, size=(320, 240))
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "itr.cli.main", "index", str(src), "--out", str(out), "--checkpoint-every", "8",
           "--batch-size", "8", "--quiet"]
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err) as proc:
        deadline = time.time() + 120
        while time.time() < deadline:
            m = out / "manifest.json"
            if m.exists() and json.loads(m.read_text())["counts"]["items"] >= 8:
                break
            if proc.poll() is not None:
                pytest.fail(f"indexer finished before it could be killed: {log.read_text()[-500:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, stdout, _ = itr("info", out, "--json")
    info = json.loads(stdout)
    assert code == 0 and 8 <= info["counts"]["items"] < 50 and info["complete"] is False
    done_before = info["counts"]["items"]
    code, stdout, _ = itr("index", src, "--out", out, "--json", "--checkpoint-every", "8")
    report = json.loads(stdout)
    assert code == 0 and report["unchanged"] == done_before and report["added"] == 50 - done_before
    assert report["counts"]["items"] == 50
    code, stdout, _ = itr("info", out, "--json")
    assert json.loads(stdout)["complete"] is True


def test_make_dataset_and_models(tmp_path: Path) -> None:
    require_emoji_data()
    code, stdout, _ = itr("make-dataset", "emoji", "--out", tmp_path / "fr", "--lang", "fr", "--limit", "5")
    jsonl = Path(stdout.strip())
    assert code == 0 and jsonl.name == "emoji-fr.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5 and all((jsonl.parent / r["image"]).is_file() for r in rows)
    assert all(r["meta"]["lang"] == "fr" and r["meta"]["split"] in ("train", "val", "test") for r in rows)
    code, _, stderr = itr("make-dataset", "coco", "--out", tmp_path / "x")
    assert code == 2 and "unknown dataset 'coco'" in stderr
    code, _, stderr = itr("make-dataset", "emoji", "--out", tmp_path / "x", "--lang", "zz-nope")
    assert code == 2 and "no CLDR annotations for language 'zz-nope'" in stderr
    code, stdout, _ = itr("models")
    assert code == 0 and stdout.splitlines()[:4] == ["builtin", "builtin:proj", "builtin:multi", "builtin:conse"]


def test_approximate_index_from_the_cli(emoji_jsonl: Path, emoji_index: Path, tmp_path: Path) -> None:
    """--index on an existing index builds the structure without re-encoding; search uses it and its
    knobs; --index exact removes it again."""
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(emoji_index, copy)
    code, stdout, stderr = itr("index", emoji_jsonl, "--out", copy, "--index", "ivf-flat", "--ann-min-rows", "50",
                               "--json")
    report = json.loads(stdout)
    assert code == 0, stderr
    assert report["images_encoded"] == 0 and report["ann"] and report["ann"][0].endswith(": IVF2,Flat")
    code, stdout, _ = itr("info", copy, "--json")
    ann = json.loads(stdout)["ann"]
    assert ann["policy"]["kind"] == "ivf-flat" and {b["side"] for b in ann["built"]} == {"images", "texts"}
    assert all(0 < b["recall"] <= 1 and b["knob"] == "nprobe" for b in ann["built"])
    results = {}
    for flags in ((), ("--nprobe", "2"), ("--exact",)):
        code, stdout, stderr = itr("search", copy, "a watch", "-k", "3", "--json", *flags)
        assert code == 0, stderr
        results[flags] = [r["id"] for r in json.loads(stdout)["results"]]
    assert results[("--nprobe", "2")] == results[("--exact",)]  # every list visited: exact
    code, _, stderr = itr("index", emoji_jsonl, "--out", copy, "--index", "annoy")
    assert code == 2 and "unknown index kind 'annoy'; valid kinds: exact, auto, hnsw" in stderr
    code, _, _ = itr("index", emoji_jsonl, "--out", copy, "--index", "exact", "--quiet")
    assert code == 0 and not list(copy.glob("segments/*/ann-*"))


def test_queries_from_stdin_load_the_model_once(emoji_index: Path) -> None:
    from typer.testing import CliRunner

    from itr.cli.main import app

    res = CliRunner().invoke(app, ["search", str(emoji_index), "-k", "2", "--json"],
                             input="a watch\n\n   \nan umbrella\n")
    assert res.exit_code == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]  # JSON Lines: one document per query
    assert [p["query"] for p in lines] == ["a watch", "an umbrella"] and all(len(p["results"]) == 2 for p in lines)
    res = CliRunner().invoke(app, ["search", str(emoji_index), "-k", "1"], input="a watch\n")
    assert res.exit_code == 0 and "images for: a watch" in res.stdout


def test_exports_and_index_from_embeddings(emoji_index: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    code, stdout, stderr = itr("export", emoji_index, "--to", f"clip-retrieval:{tmp_path / 'cr'}", "--json")
    report = json.loads(stdout)
    assert code == 0, stderr
    assert report["images"] > 80 and "img_emb/img_emb_0.npy" in report["files"]
    code, stdout, stderr = itr("export", emoji_index, "--to", f"parquet:{tmp_path / 'all.parquet'}", "-q")
    assert code == 0 and pq.read_metadata(tmp_path / "all.parquet").num_rows > report["images"]
    code, stdout, stderr = itr("index", tmp_path / "all.parquet", "--from-embeddings", "-o", tmp_path / "again", "--json")
    assert code == 0 and json.loads(stdout)["added"] == report["images"], stderr
    a = json.loads(itr("search", emoji_index, "a watch", "-k", "3", "--json")[1])["results"]
    b = json.loads(itr("search", tmp_path / "again", "a watch", "-k", "3", "--json")[1])["results"]
    assert [r["id"] for r in a] == [r["id"] for r in b]
    code, _, stderr = itr("index", tmp_path / "cr", "--from-embeddings", "-o", tmp_path / "x", "-m", "builtin:conse")
    assert code == 2 and "was computed by model 'builtin'" in stderr


def test_index_a_csv_table_with_named_columns(emoji_jsonl: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in emoji_jsonl.read_text().splitlines()[:6]]
    table = tmp_path / "t.csv"
    table.write_text("picture,words\n" + "".join(f"{emoji_jsonl.parent / r['image']},{r['captions'][0]}\n" for r in rows))
    code, _, stderr = itr("index", table, "-o", tmp_path / "idx", "-q")
    assert code == 2 and "--image-col" in stderr
    code, stdout, stderr = itr("index", table, "-o", tmp_path / "idx", "--image-col", "picture",
                               "--caption-col", "words", "--json")
    assert code == 0 and json.loads(stdout)["added"] == 6, stderr
