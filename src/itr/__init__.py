"""ITR: image-text retrieval. Encode images and texts, index them, search both ways, offline."""

from __future__ import annotations

from .collection import OnError, SourceItem, SourceScan, scan_source
from .encoders import Encoder, encode_image_files, list_encoders, load_encoder
from .errors import (
    BadImageError,
    IncompatibleIndexError,
    IncompatibleModelError,
    IndexLockedError,
    InputError,
    ItrError,
    MissingExtraError,
    UnknownNameError,
)
from .images import load_image
from .index import BuildOptions, BuildReport, DenseIndex, IndexWriter, build_index
from .search import Searcher, open_searcher
from .types import Embeddings, Hit, Target

__version__ = "0.1.0"

__all__ = [
    "BadImageError",
    "BuildOptions",
    "BuildReport",
    "DenseIndex",
    "Embeddings",
    "Encoder",
    "Hit",
    "IncompatibleIndexError",
    "IncompatibleModelError",
    "IndexLockedError",
    "IndexWriter",
    "InputError",
    "ItrError",
    "MissingExtraError",
    "OnError",
    "Searcher",
    "SourceItem",
    "SourceScan",
    "Target",
    "UnknownNameError",
    "__version__",
    "build_index",
    "encode_image_files",
    "list_encoders",
    "load_encoder",
    "load_image",
    "open_searcher",
    "scan_source",
]
