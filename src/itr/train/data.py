"""Training data: image-caption pairs from the same dataset specs ``itr eval`` reads.

The built-in sets carry a fixed split by a stable hash of each item. Training loads only ``train``,
and then *re-derives* every item's split from its key (the emoji character, the clip-art path), so
no evaluation item can reach training through a stale cache, an edited JSONL or a bug in a filter.
"""

from __future__ import annotations

from collections.abc import Callable

from ..datasets.emoji import split_of
from ..errors import InputError
from ..eval.datasets import EvalDataset, LoadOptions, NoSplitsError, UnknownSplitError, load_eval_dataset

TRAIN_SPLIT = "train"
VAL_SPLIT = "val"


def _emoji_key(item_id: str) -> str:
    # ids are "emoji_" + the code points in hex joined by "-" (see datasets.emoji._file_name)
    return "".join(chr(int(h, 16)) for h in item_id.removeprefix("emoji_").split("-"))


SPLIT_KEYS: dict[str, Callable[[str], str]] = {"emoji": _emoji_key, "openclipart": lambda item_id: item_id,
                                               "tuxpaint": lambda item_id: item_id}
"""Built-in schemes -> how to recover the hashed split key from an item id."""


def check_no_eval_items(ds: EvalDataset, scheme: str) -> None:
    """Raise if any item of a built-in set is not in the training split by its own hash."""
    key_of = SPLIT_KEYS.get(scheme)
    if key_of is None:
        return
    leaked = [it.id for it in ds.items if split_of(key_of(it.id)) != TRAIN_SPLIT]
    if leaked:
        raise InputError(f"{ds.name}: {len(leaked)} item(s) from evaluation splits in the training data "
                         f"(first: {leaked[0]}); delete the cached dataset folder and retry")


def load_training_set(spec: str, *, split: str = TRAIN_SPLIT, options: LoadOptions | None = None) -> EvalDataset | None:
    """The ``split`` part of a dataset spec, checked against evaluation leaks (``train`` split only).

    A JSONL file without split fields is all training data (and has no validation part: returns
    None for ``split="val"``). Built-in sets and Karpathy files always have splits.
    """
    options = options or LoadOptions()
    scheme = spec.partition(":")[0]
    def load(split_: str | None) -> EvalDataset:
        return load_eval_dataset(spec, LoadOptions(split=split_, images_root=options.images_root,
                                                   skip_missing=options.skip_missing, max_captions=options.max_captions))

    try:
        ds = load(split)
    except NoSplitsError:
        if scheme != "jsonl" or split != TRAIN_SPLIT:
            return None  # a file without splits is all training data, and has no validation part
        ds = load(None)
    except UnknownSplitError:
        if split == TRAIN_SPLIT:
            raise
        return None  # no validation/test part in this source
    if split == TRAIN_SPLIT:
        check_no_eval_items(ds, scheme)
    return ds
