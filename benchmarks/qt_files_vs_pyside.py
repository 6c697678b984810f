"""ITR's hand-written Qt file readers (``itr.datasets.qt_files``) against PySide6, on every ``.rcc``
and ``.qm`` file of Debian's ``gcompris-qt-data``: same paths and bytes, same translations, and the
time each takes.

PySide6 is not an ITR dependency (a 246 MB install); run this in an environment that has it, with
ITR's source on the path:

    python3 -m venv /tmp/pyside && /tmp/pyside/bin/pip install pyside6-essentials numpy pillow
    PYTHONPATH=src /tmp/pyside/bin/python benchmarks/qt_files_vs_pyside.py
"""

from __future__ import annotations

import glob
import time

from PySide6.QtCore import QCoreApplication, QDirIterator, QFile, QFileInfo, QIODevice, QResource, QTranslator

from itr.datasets.qt_files import RccArchive, read_qm

ROOT = "/usr/share/gcompris-qt"


def main() -> None:
    app = QCoreApplication([])  # noqa: F841 - QTranslator needs an application object
    rccs = sorted(glob.glob(f"{ROOT}/rcc/*.rcc"))
    start = time.perf_counter()
    mine: dict[str, bytes] = {}
    for path in rccs:
        mine.update(RccArchive(path).read_all())
    t_mine = time.perf_counter() - start

    start = time.perf_counter()
    for path in rccs:
        assert QResource.registerResource(path), path
    theirs: dict[str, bytes] = {}
    it = QDirIterator(":/gcompris", QDirIterator.IteratorFlag.Subdirectories)
    while it.hasNext():
        name = it.next()
        f = QFile(name)
        if QFileInfo(name).isFile() and f.open(QIODevice.OpenModeFlag.ReadOnly):
            theirs[name[2:]] = bytes(f.readAll().data())
    t_theirs = time.perf_counter() - start
    ours = {k: v for k, v in mine.items() if k.startswith("gcompris")}
    same = set(ours) == set(theirs) and all(ours[k] == theirs[k] for k in theirs)
    print(f"rcc: {len(rccs)} files, {len(ours)} entries (PySide6 {len(theirs)}), identical: {same}; "
          f"ITR {t_mine:.2f} s, PySide6 {t_theirs:.2f} s")

    messages = disagree = 0
    t_mine = t_theirs = 0.0
    for path in sorted(glob.glob(f"{ROOT}/translations/*.qm")):
        start = time.perf_counter()
        table = read_qm(path)
        t_mine += time.perf_counter() - start
        tr = QTranslator()
        start = time.perf_counter()
        assert tr.load(path), path
        for (context, source), value in table.items():
            messages += 1
            disagree += tr.translate(context, source) != value
        t_theirs += time.perf_counter() - start
    print(f"qm: {messages} messages, {disagree} disagreeing; ITR {t_mine:.2f} s (reads all), "
          f"PySide6 {t_theirs:.2f} s (load + one look-up each)")


if __name__ == "__main__":
    main()
