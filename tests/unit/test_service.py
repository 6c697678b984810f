"""IndexService internals: batched model calls, snapshots, group commit order, media clean-up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import color_index, color_service, png_bytes

from itr.index import DenseIndex
from itr.service import NewItem, _Op, _SerialEncoder, _take_group
from itr.testing import ColorEncoder


class _SlowEncoder(ColorEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode_texts(self, texts: Any) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(0.05)
        return super().encode_texts(texts)


def test_concurrent_queries_are_batched_and_each_gets_its_own_vectors() -> None:
    slow = _SlowEncoder()
    enc = _SerialEncoder(slow)
    words = ["red", "green", "blue", "yellow"] * 6
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, enc.encode_texts([words[i]])))
               for i in range(len(words))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(slow.calls) == len(words) and len(slow.calls) < len(words) / 2
    ref = ColorEncoder().encode_texts(words)
    for i in range(len(words)):
        np.testing.assert_allclose(out[i][0], ref[i], atol=1e-6)


def test_a_failing_batch_fails_every_caller_in_it() -> None:
    class Broken(ColorEncoder):
        def encode_texts(self, texts: Any) -> np.ndarray:
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        _SerialEncoder(Broken()).encode_texts(["red"])


def test_groups_keep_order_between_adds_and_deletes() -> None:
    ops = [_Op("add", "a", Future()), _Op("add", "b", Future()), _Op("add", "a", Future()),
           _Op("delete", "a", Future()), _Op("delete", "c", Future()), _Op("add", "d", Future())]
    groups = []
    while ops:
        groups.append([(o.kind, o.item_id) for o in _take_group(ops)])
    assert groups == [[("add", "a"), ("add", "b")], [("add", "a")], [("delete", "a"), ("delete", "c")], [("add", "d")]]


def test_snapshots_share_unchanged_segments(tmp_path: Path) -> None:
    svc = color_service(color_index(tmp_path), refresh_seconds=0)
    before = svc.index
    svc.add(NewItem(captions=("a red thing",), id="x"))
    after = svc.index
    assert after is not before and after.generation == before.generation + 1
    assert after.segments[0] is before.segments[0]  # unchanged: shared, not re-read
    assert len(after.segments) == 2 and before.item("x") is None and after.item("x") is not None
    svc.delete("img/000.png")
    latest = svc.index
    assert latest.segments[0].images is before.segments[0].images  # same memory map, new deletion mask
    assert not latest.segments[0].image_live[0] and before.segments[0].image_live[0]
    svc.close()


def test_uploads_of_a_crashed_commit_are_removed_at_start(tmp_path: Path) -> None:
    index = color_index(tmp_path)
    svc = color_service(index)
    kept = Path(svc.item(svc.add(NewItem(image=png_bytes("red"), id="kept")).id)["image"])
    svc.close()
    orphan = index / "media" / "0123-4567.png"  # as left by a crash between upload and commit
    orphan.write_bytes(png_bytes("blue"))
    color_service(index).close()
    assert kept.exists() and not orphan.exists()
    assert DenseIndex.open(index).item("kept")["image"] == str(kept)
