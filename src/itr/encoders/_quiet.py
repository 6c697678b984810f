"""Keep transformers quiet while ITR loads models (the library never prints; the CLI shows progress)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    # transformers logs that its torchvision image processors are unavailable and falls back to the
    # Pillow ones (expected: no torchvision build exists for this torch), and draws a tqdm bar per
    # checkpoint load. Neither is news to an ITR user; real errors still raise.
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level = logger.level
    bars = hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
