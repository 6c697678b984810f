"""GCompris as an evaluation set: the Qt file readers on the real package, and the built set."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import require_gcompris_data
from PIL import Image

from itr.datasets.qt_files import RccArchive, read_qm
from itr.errors import InputError

ROOT = Path("/usr/share/gcompris-qt")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_gcompris_data()
    from itr.datasets.gcompris import build_gcompris_dataset

    return build_gcompris_dataset(tmp_path_factory.mktemp("gcompris"))


def test_rcc_archive_lists_and_reads_the_bundled_files() -> None:
    require_gcompris_data()
    rcc = RccArchive(ROOT / "rcc" / "explore_world_animals.rcc")
    files = rcc.read_all()
    assert set(rcc.files()) == set(files) and rcc.version in (1, 2, 3)
    board = files["gcompris/src/activities/explore_world_animals/resource/board/board1.qml"].decode()
    assert 'qsTr("Jaguar")' in board  # a compressed entry, unpacked
    photo = files["gcompris/src/activities/explore_world_animals/resource/animals/jaguar.webp"]
    with Image.open(io.BytesIO(photo)) as img:
        assert img.format == "WEBP" and min(img.size) >= 100


def test_qm_translations_by_context_and_source() -> None:
    require_gcompris_data()
    fr = read_qm(ROOT / "translations" / "gcompris_fr.qm")
    assert fr[("board1", "Jaguar")] == "Le jaguar"
    assert len(fr) > 1000 and all(isinstance(v, str) for v in fr.values())


def test_readers_refuse_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.rcc").write_bytes(b"not a resource file")
    with pytest.raises(InputError, match="no 'qres' header"):
        RccArchive(tmp_path / "x.rcc")
    with pytest.raises(InputError, match="not a Qt translation file"):
        read_qm(tmp_path / "x.rcc")


def test_the_built_set(built: Path) -> None:
    rows = [json.loads(line) for line in built.read_text(encoding="utf-8").splitlines()]
    kinds = Counter(r["meta"]["kind"] for r in rows)
    assert kinds["photo"] >= 200 and kinds["drawing"] >= 100
    assert len({r["id"] for r in rows}) == len(rows) and len({r["image"] for r in rows}) == len(rows)
    by_id = {r["id"]: r for r in rows}
    jaguar = by_id["explore_world_animals/jaguar"]
    assert jaguar["captions"][0] == "Jaguar" and "strongest bite" in jaguar["captions"][1]
    assert all(r["meta"]["split"] == "test" and r["meta"]["licence"] and r["meta"]["source"].startswith("src/")
               for r in rows)
    # licences come from the copyright file's own paragraphs where it names the file
    assert sum(r["meta"]["licence_files"] not in ("*", "") for r in rows) >= 150
    assert by_id["categorization/images/tools/wrench"]["meta"]["licence"] == "public-domain"
    for r in rows[:: max(1, len(rows) // 20)]:
        with Image.open(built.parent / r["image"]) as img:
            img.load()
    fr = {json.loads(line)["id"]: json.loads(line) for line in
          (built.parent / "gcompris-fr.jsonl").read_text(encoding="utf-8").splitlines()}
    assert fr["explore_world_animals/jaguar"]["captions"][0] == "Le jaguar"
    assert sum(r["meta"]["kind"] == "drawing" for r in fr.values()) >= 100  # words named in French
    assert len(list(built.parent.glob("gcompris-*.jsonl"))) >= 30


def test_eval_loader_languages_and_kinds(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from itr.eval import ANY_LANG, LoadOptions, load_eval_dataset
    from itr.eval.datasets import _builtin_dir

    monkeypatch.setenv("ITR_CACHE_DIR", str(built.parent.parent / "cache"))
    shutil.copytree(built.parent, _builtin_dir("gcompris"))
    all_en = load_eval_dataset("gcompris")
    photos = load_eval_dataset("gcompris-photos")
    drawings = load_eval_dataset("gcompris-drawings:de")
    assert len(photos.items) + len(load_eval_dataset("gcompris-drawings").items) == len(all_en.items)
    assert all(it.id.startswith("lang/") for it in drawings.items)
    multi = load_eval_dataset("gcompris:en,fr,de", LoadOptions())
    assert multi.languages == ("en", "fr", "de") and 0 < len(multi.items) < len(all_en.items)
    assert ANY_LANG in all_en.items[0].captions
    with pytest.raises(InputError, match="no captions in 'xx'.*languages: .*fr"):
        load_eval_dataset("gcompris:xx")
