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
from .search import Fusion, Mode, Searcher, SearchOptions, SearchResponse, open_searcher
from .types import Embeddings, Hit, Target

__version__ = "0.1.0"

__all__ = [
    "BadImageError",
    "build_index",
    "BuildOptions",
    "BuildReport",
    "DenseIndex",
    "Embeddings",
    "encode_image_files",
    "Encoder",
    "Fusion",
    "Hit",
    "IncompatibleIndexError",
    "IncompatibleModelError",
    "IndexLockedError",
    "IndexWriter",
    "InputError",
    "ItrError",
    "list_encoders",
    "load_encoder",
    "load_image",
    "MissingExtraError",
    "Mode",
    "OnError",
    "open_searcher",
    "scan_source",
    "Searcher",
    "SearchOptions",
    "SearchResponse",
    "SourceItem",
    "SourceScan",
    "Target",
    "UnknownNameError",
    "__version__",
]
