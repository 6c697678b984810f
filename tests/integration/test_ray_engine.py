"""`itr index --engine ray` on a real local Ray instance: the same index as in-process encoding,
resumption without re-encoding finished shards, a worker killed mid-run, bad items, refusals."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import save_tiny_checkpoint

ray = pytest.importorskip("ray")

from itr.collection import scan_source  # noqa: E402
from itr.encoders import load_encoder  # noqa: E402
from itr.errors import IncompatibleIndexError, IncompatibleModelError  # noqa: E402
from itr.index import BuildOptions, DenseIndex, IndexWriter, build_index  # noqa: E402
from itr.index.distributed import EncodeActor, RayOptions, build_index_ray  # noqa: E402
from itr.index.writer import SHARDS_DIR, write_segment_files  # noqa: E402
from itr.testing import solid_image  # noqa: E402

pytestmark = pytest.mark.hf
N = 48


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance for the module (starting one takes seconds). PIDs of encoder actors
    are written to ITR_RAY_PID_DIR, which the actors get through Ray's runtime environment."""
    pid_dir = tmp_path_factory.mktemp("pids")
    os.environ["ITR_RAY_PID_DIR"] = str(pid_dir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"ITR_RAY_PID_DIR": str(pid_dir)}})
    yield pid_dir
    ray.shutdown()
    os.environ.pop("ITR_RAY_PID_DIR", None)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N coloured images with two captions each, one corrupt image, one text-only item."""
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N):
        rgb = tuple(int(c) for c in rng.integers(0, 255, 3))
        img = solid_image(root / "img" / f"{i:03d}.png", rgb, size=(40 + i, 30))
        lines.append({"id": f"it{i:03d}", "image": str(img), "captions": [f"colour {rgb}", f"item {i}"]})
    (root / "img" / "bad.png").write_bytes(b"not a png")
    lines.append({"id": "bad", "image": str(root / "img" / "bad.png"), "captions": ["broken"]})
    lines.append({"id": "text-only", "captions": ["just words"]})
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"local:{save_tiny_checkpoint('clip', tmp_path_factory.mktemp('tiny-clip'))}"


def _vectors(index: Path) -> dict[str, np.ndarray]:
    idx = DenseIndex.open(index)
    out = {}
    for seg in idx.segments:
        for it in seg.items:
            if it["id"] not in seg.deleted and it.get("row") is not None:
                out[it["id"]] = np.asarray(seg.images[it["row"]])
    return out


def _assert_same_index(a: Path, b: Path) -> None:
    va, vb = _vectors(a), _vectors(b)
    assert sorted(va) == sorted(vb)
    assert max(float(np.abs(va[k] - vb[k]).max()) for k in va) < 1e-5
    ia, ib = DenseIndex.open(a), DenseIndex.open(b)
    assert ia.counts == ib.counts
    assert sorted(it["id"] for it in ia.items()) == sorted(it["id"] for it in ib.items())


@pytest.fixture(scope="module")
def reference(source: Path, model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "idx"
    build_index(scan_source(source), load_encoder(model), out, BuildOptions(representation="dense"))
    return out


def test_ray_builds_the_same_index_as_in_process(ray_local: Path, source: Path, model: str, reference: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "idx"
    report = build_index_ray(scan_source(source), load_encoder(model), out, BuildOptions(),
                             RayOptions(shard_size=10, actors=1))
    assert report.added == N + 1 and len(report.failed) == 1 and "bad.png" in report.failed[0]
    assert report.images_encoded == N and report.resumed_shards == 0
    _assert_same_index(out, reference)
    assert not (out / SHARDS_DIR).exists()
    again = build_index_ray(scan_source(source), load_encoder(model), out, BuildOptions(), RayOptions(shard_size=10))
    assert again.added == 0 and again.unchanged == N + 1  # incremental, as in-process


class _Stop(Exception):
    pass


def test_interrupted_job_resumes_without_re_encoding_finished_shards(ray_local: Path, source: Path, model: str,
                                                                     reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    seen = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 3:  # the 0 call, then two finished shards
            raise _Stop

    with pytest.raises(_Stop):
        build_index_ray(scan_source(source), load_encoder(model), out, BuildOptions(),
                        RayOptions(shard_size=10, actors=1), progress=stop_after_two)
    finished = {p.name: p.stat().st_mtime_ns for p in (out / SHARDS_DIR).iterdir() if not p.name.startswith(".")}
    assert len(finished) >= 2
    assert not (out / "manifest.json").exists()  # nothing merged: the index is not half-built
    report = build_index_ray(scan_source(source), load_encoder(model), out, BuildOptions(),
                             RayOptions(shard_size=10, actors=1))
    assert report.resumed_shards == len(finished)
    _assert_same_index(out, reference)


def test_a_killed_worker_loses_and_duplicates_nothing(ray_local: Path, source: Path, model: str, reference: Path,
                                                      tmp_path: Path) -> None:
    import threading

    for f in ray_local.iterdir():
        f.unlink()
    out = tmp_path / "idx"
    killed: list[tuple[int, int]] = []
    stop = threading.Event()

    def kill_mid_run() -> None:
        """SIGKILL the encoder actor once some shards are written and others are not."""
        while not stop.is_set():
            pids = [int(p.stem) for p in ray_local.glob("*.pid")]
            shards = out / SHARDS_DIR
            written = len([p for p in shards.iterdir() if not p.name.startswith(".")]) if shards.is_dir() else 0
            if pids and written >= 3:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], written))
                return
            stop.wait(0.002)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    try:
        report = build_index_ray(scan_source(source), load_encoder(model), out, BuildOptions(batch_size=1),
                                 RayOptions(shard_size=1, actors=1))
    finally:
        stop.set()
        killer.join()
    assert killed and killed[0][1] < N + 2, "no actor was killed mid-run: the test did not exercise the fault"
    assert len(list(ray_local.glob("*.pid"))) >= 2  # Ray started a replacement actor
    assert report.added == N + 1
    _assert_same_index(out, reference)
    ids = [it["id"] for it in DenseIndex.open(out).items()]
    assert len(ids) == len(set(ids)) == N + 1


def test_another_model_is_refused(model: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An actor whose checkpoint differs from the driver's refuses to encode; a shard of another
    dimension is refused by the index."""
    with pytest.raises(IncompatibleModelError, match="every node must have the same checkpoint"):
        EncodeActor(model, "another-fingerprint", None, BuildOptions(), True, str(tmp_path), None)
    with IndexWriter(tmp_path / "idx", encoder={"spec": "x", "fingerprint": "f", "dim": 16}) as w:
        shard = tmp_path / "shard"
        write_segment_files(shard, [{"id": "a", "image": None, "row": 0, "signature": "", "meta": {}, "captions": 0}],
                            np.zeros((1, 8), np.float32), [], np.zeros((0, 8), np.float32))
        with pytest.raises(IncompatibleIndexError, match=r"float32 \(n, 16\)"):
            w.adopt_segment(shard)


def test_ray_reads_webdataset_shards(ray_local: Path, model: str, tmp_path: Path) -> None:
    from helpers import write_shards  # img2dataset's layout

    spec = write_shards(tmp_path / "shards", n_shards=2, per_shard=5)
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    report = build_index_ray(scan_source(spec), load_encoder(model), ray_out, BuildOptions(),
                             RayOptions(shard_size=4, actors=1))
    assert report.added == 10 and not report.failed and report.images_encoded == 10
    build_index(scan_source(spec), load_encoder(model), local_out, BuildOptions())
    _assert_same_index(ray_out, local_out)
