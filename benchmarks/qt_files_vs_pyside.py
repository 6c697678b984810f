"""Compare itr's rcc/qm readers with PySide6 on every file of gcompris-qt-data."""
from __future__ import annotations

import glob
import sys
import time

sys.path.insert(0, "/work/main/src")
from PySide6.QtCore import QCoreApplication, QDirIterator, QFile, QFileInfo, QIODevice, QResource, QTranslator

from itr.datasets.qt_files import RccArchive, read_qm

app = QCoreApplication([])
rccs = sorted(glob.glob("/usr/share/gcompris-qt/rcc/*.rcc"))
t = time.perf_counter(); mine = {}
for r in rccs:
    mine.update(RccArchive(r).read_all())
t_mine = time.perf_counter() - t
t = time.perf_counter(); theirs = {}
for r in rccs:
    assert QResource.registerResource(r)
it = QDirIterator(":/gcompris", QDirIterator.Subdirectories)
paths = []
while it.hasNext():
    p = it.next()
    f = QFile(p)
    if QFileInfo(p).isFile() and f.open(QIODevice.ReadOnly):
        theirs[p[2:]] = bytes(f.readAll())
t_theirs = time.perf_counter() - t
gc_mine = {k: v for k, v in mine.items() if k.startswith("gcompris")}
print("rcc files:", len(rccs), "entries mine", len(gc_mine), "pyside", len(theirs),
      "same paths", set(gc_mine) == set(theirs), "same bytes", all(gc_mine[k] == theirs[k] for k in theirs),
      f"time mine {t_mine:.2f}s pyside {t_theirs:.2f}s")
qms = sorted(glob.glob("/usr/share/gcompris-qt/translations/*.qm"))
bad = 0; n = 0; tm = tp = 0.0
for q in qms:
    t = time.perf_counter(); table = read_qm(q); tm += time.perf_counter() - t
    tr = QTranslator(); t = time.perf_counter(); assert tr.load(q)
    for (ctx, src), val in table.items():
        n += 1
        if tr.translate(ctx, src) != val:
            bad += 1
    tp += time.perf_counter() - t
print("qm files:", len(qms), "messages", n, "disagreeing", bad, f"time mine {tm:.2f}s pyside(load+lookups) {tp:.2f}s")
