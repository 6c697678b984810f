"""The built-in model and its lexicon head under concurrent requests (a server's thread pool)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.builtin


def test_model_and_known_word_check_share_the_tokenizer_safely(builtin_encoder: Any) -> None:
    # The fast tokenizer keeps padding/truncation state on one Rust object; without the lock in
    # MiniLMText.tokenize, concurrent batches of different lengths get each other's padding.
    from itr.service import _SerialEncoder
    from itr.sparse.encoder import load_sparse_encoder

    sparse = load_sparse_encoder("builtin", builtin_encoder)
    enc = _SerialEncoder(builtin_encoder)
    queries = ["a cat", "a red bicycle leaning against a wall in the rain", "pizza", "two dogs playing with a ball",
               "the moon over the sea at night", "jar"]
    expected = builtin_encoder.encode_texts(queries)
    errors: list[BaseException] = []

    stop = threading.Event()

    def checker() -> None:  # the lexicon's known-word check: no padding, a long batch
        try:
            while not stop.is_set():
                sparse.known_terms(queries * 50)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def worker(n: int) -> None:  # the model: padded batches of different lengths
        try:
            for i in range(40):
                a, b = (n + i) % len(queries), (n + i + 1) % len(queries)
                got = enc.encode_texts([queries[a], queries[b]])
                np.testing.assert_allclose(got, expected[[a, b]], atol=2e-4)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    checkers = [threading.Thread(target=checker) for _ in range(2)]
    for t in checkers:
        t.start()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in checkers:
        t.join()
    assert not errors, errors[:2]
