"""Reading the two Qt file formats GCompris ships its data in: resource bundles (``.rcc``) and
compiled translations (``.qm``).

Why by hand: the library that reads them, PySide6 (``QResource``, ``QTranslator``), is a 246 MB
install (Qt itself) for what is, for a dataset builder, a directory walk and a table read. Both
formats are small and stable; the readers below follow Qt's own writers (``rcc.cpp``,
``qtranslator.cpp`` of Qt 5 and 6) and were checked against PySide6 6.12 on every ``.rcc`` and
``.qm`` of ``gcompris-qt-data`` 3.1 (same paths and bytes, same translations:
``benchmarks/qt_files_vs_pyside.py``).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

_RCC_MAGIC = b"qres"
_DIRECTORY, _COMPRESSED, _COMPRESSED_ZSTD = 0x02, 0x01, 0x04


class RccArchive:
    """The files of a Qt resource bundle (rcc format versions 1-3), by their ``:/`` path.

    Layout: a header (magic, version, offsets of the tree, data and names sections, and from
    version 3 a flags word); a tree of fixed-size nodes, node 0 the root; a directory node names
    its children as a run of node indexes, a file node gives the offset of its data; data entries
    are a 32-bit size then the bytes (zlib-compressed ones start with their 32-bit unpacked size,
    as ``qCompress`` writes); names are a 16-bit length, a 32-bit hash and UTF-16BE characters.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data = self.path.read_bytes()
        if self._data[:4] != _RCC_MAGIC:
            raise InputError(f"{self.path}: not a Qt resource file (no 'qres' header)")
        self.version, self._tree, self._payload, self._names = struct.unpack(">IIII", self._data[4:20])
        if self.version not in (1, 2, 3):
            raise InputError(f"{self.path}: Qt resource format version {self.version} is not supported (1-3)")
        self._node_size = 14 if self.version == 1 else 22

    def _name(self, offset: int) -> str:
        at = self._names + offset
        (length,) = struct.unpack(">H", self._data[at : at + 2])
        return self._data[at + 6 : at + 6 + 2 * length].decode("utf-16-be")

    def _node(self, index: int) -> tuple[str, int, bytes]:
        at = self._tree + index * self._node_size
        name_offset, flags = struct.unpack(">IH", self._data[at : at + 6])
        return self._name(name_offset), flags, self._data[at + 6 : at + 14]

    def files(self) -> Iterator[str]:
        """Every file's path, as ``gcompris/src/activities/...`` (no leading ``:/``)."""
        for path, _ in self._walk(0, ""):
            yield path

    def _walk(self, index: int, prefix: str) -> Iterator[tuple[str, tuple[int, int]]]:
        name, flags, rest = self._node(index)
        path = f"{prefix}/{name}" if prefix else ("" if index == 0 else name)
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", rest)
            for child in range(first, first + count):
                yield from self._walk(child, path)
        else:
            yield path, (flags, struct.unpack(">I", rest[4:8])[0])

    def read_all(self) -> dict[str, bytes]:
        """path -> file contents, for every file."""
        return {path: self._read(flags, offset) for path, (flags, offset) in self._walk(0, "")}

    def _read(self, flags: int, offset: int) -> bytes:
        at = self._payload + offset
        (size,) = struct.unpack(">I", self._data[at : at + 4])
        blob = self._data[at + 4 : at + 4 + size]
        if flags & _COMPRESSED_ZSTD:
            raise InputError(f"{self.path}: zstd-compressed resources are not supported")
        if flags & _COMPRESSED:
            (unpacked,) = struct.unpack(">I", blob[:4])
            out = zlib.decompress(blob[4:])
            if len(out) != unpacked:
                raise InputError(f"{self.path}: a compressed resource does not have its recorded size")
            return out
        return blob


_QM_MAGIC = bytes.fromhex("3cb86418caef9c95cd211cbf60a1bddd")
_QM_MESSAGES = 0x69
_TAG_END, _TAG_TRANSLATION, _TAG_OBSOLETE1, _TAG_SOURCE, _TAG_CONTEXT, _TAG_COMMENT = 1, 3, 5, 6, 7, 8


def read_qm(path: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
    """(context, source text) -> translation, for every message of a compiled translation file.

    A ``.qm`` file is a magic number and tagged sections; the messages section is a run of records,
    each a list of tagged fields (translation as UTF-16BE, source text, context and comment as
    UTF-8) closed by an end tag. Files written by ``lrelease`` keep the source texts, which is what
    lets them be read without the program's string table. Plural forms keep their first form.
    """
    data = Path(path).read_bytes()
    if data[:16] != _QM_MAGIC:
        raise InputError(f"{path}: not a Qt translation file (.qm)")
    out: dict[tuple[str, str], str] = {}
    pos = 16
    while pos + 5 <= len(data):
        tag = data[pos]
        (length,) = struct.unpack(">I", data[pos + 1 : pos + 5])
        body = data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if tag != _QM_MESSAGES:
            continue
        m = 0
        fields: dict[int, str] = {}
        translations: list[str] = []
        while m < len(body):
            field = body[m]
            m += 1
            if field == _TAG_END:
                if translations and _TAG_SOURCE in fields:
                    out.setdefault((fields.get(_TAG_CONTEXT, ""), fields[_TAG_SOURCE]), translations[0])
                fields, translations = {}, []
                continue
            if field == _TAG_OBSOLETE1:
                m += 4
                continue
            (n,) = struct.unpack(">I", body[m : m + 4])
            m += 4
            if field == _TAG_TRANSLATION:
                if n != 0xFFFFFFFF:
                    translations.append(body[m : m + n].decode("utf-16-be"))
                    m += n
            elif field in (_TAG_SOURCE, _TAG_CONTEXT, _TAG_COMMENT):
                fields[field] = body[m : m + n].decode("utf-8", "replace")
                m += n
            else:
                raise InputError(f"{path}: unknown message field {field} in a .qm file")
    return out
