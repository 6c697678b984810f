"""Index folders: building, storing and exact search."""

from __future__ import annotations

from .build import BuildOptions, BuildReport, build_index
from .manifest import FORMAT_VERSION, read_manifest
from .store import DenseIndex
from .writer import IndexWriter

__all__ = ["FORMAT_VERSION", "BuildOptions", "BuildReport", "DenseIndex", "IndexWriter", "build_index", "read_manifest"]
