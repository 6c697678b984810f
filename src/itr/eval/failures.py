"""Failure analysis: the worst queries of a run with what the model returned instead.

People would rather look than read: next to the Markdown list, a contact sheet shows each failed
text query, the image it should have found (green frame) and the images ranked above it (red frame).
Failures are the model's, so they are computed on exact scores whatever index kind was evaluated.
"""

from __future__ import annotations

import io
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._utils import atomic_write_bytes
from ..errors import BadImageError
from ..images import load_image
from .metrics import deterministic_scores, rank_counts_from_embeddings

TOP = 5
_CELL = 112
_TEXT_WIDTH = 220


def find_failures(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, texts: list[str],
                  image_paths: list[str], n: int, *, top: int = TOP) -> dict[str, list[dict[str, Any]]]:
    """The ``n`` worst queries each way (highest rank of the right item; pessimistic ties), with their
    ``top`` results: ``{"t2i": [{"query", "rank", "right", "right_score", "top": [{"image", "score"}]}],
    "i2t": [{"image", "rank", "captions", "top": [{"text", "score"}]}]}``."""
    text_image = np.asarray(text_image, dtype=np.int64)
    queries = np.unique(text_image)  # images no caption describes (distractors) are no i2t query
    # Ranks from the shared, chunked rank counts (pessimistic ties); only the n worst queries get
    # their scores computed again, so no full score matrix is held.
    counts = rank_counts_from_embeddings(image_emb, text_emb, text_image, i2t_images=queries)
    i2t_ranks, t2i_ranks = counts.ranks("pessimistic")
    out: dict[str, list[dict[str, Any]]] = {"t2i": [], "i2t": []}
    for t in np.argsort(-t2i_ranks, kind="stable")[:n]:
        if t2i_ranks[t] == 1:
            break
        scores = deterministic_scores(text_emb[t : t + 1], image_emb)[0]
        best = np.argsort(-scores, kind="stable")[:top]
        out["t2i"].append({"query": texts[t], "rank": int(t2i_ranks[t]), "right": image_paths[text_image[t]],
                           "right_score": round(float(scores[text_image[t]]), 4),
                           "top": [{"image": image_paths[i], "score": round(float(scores[i]), 4)} for i in best]})
    for q in np.argsort(-i2t_ranks, kind="stable")[:n]:
        if i2t_ranks[q] == 1:
            break
        i = int(queries[q])
        scores = deterministic_scores(image_emb[i : i + 1], text_emb)[0]
        best = np.argsort(-scores, kind="stable")[:top]
        out["i2t"].append({"image": image_paths[i], "rank": int(i2t_ranks[q]),
                           "captions": [texts[t] for t in np.flatnonzero(text_image == i)],
                           "top": [{"text": texts[t], "score": round(float(scores[t]), 4)} for t in best]})
    return out


def slug(report: dict[str, Any]) -> str:
    """A file name for a run: dataset and model, unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{report['dataset']}--{report['model']}").strip("_")[:120]


def failures_markdown(report: dict[str, Any], sheet: str | None) -> str:
    f = report["failures"]
    lines = [f"# Failures: {report['dataset']} · {report['model']}", ""]
    if sheet:
        lines += [f"![contact sheet]({sheet})", ""]
    lines += ["## Text → image: worst queries", "", "| query | rank | right image | top results |", "|---|---:|---|---|"]
    for row in f["t2i"]:
        top = "<br>".join(f"{Path(h['image']).name} ({h['score']:.3f})" for h in row["top"])
        lines.append(f"| {_md(row['query'])} | {row['rank']} | {Path(row['right']).name} ({row['right_score']:.3f}) | {top} |")
    lines += ["", "## Image → text: worst queries", "", "| image | rank | its captions | top captions |", "|---|---:|---|---|"]
    for row in f["i2t"]:
        top = "<br>".join(f"{_md(h['text'])} ({h['score']:.3f})" for h in row["top"])
        lines.append(f"| {Path(row['image']).name} | {row['rank']} | {'<br>'.join(_md(c) for c in row['captions'])} | {top} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _thumb(path: str) -> Image.Image:
    try:
        img = load_image(path, draft_size=(_CELL, _CELL))
    except BadImageError:
        return Image.new("RGB", (_CELL, _CELL), (200, 200, 200))
    img.thumbnail((_CELL - 8, _CELL - 8))
    return img


def contact_sheet(rows: list[dict[str, Any]]) -> Image.Image:
    """One row per failed text query: its text, the right image (green), the top results (red)."""
    font = ImageFont.load_default(size=13)
    width = _TEXT_WIDTH + _CELL * (1 + TOP)
    sheet = Image.new("RGB", (width, max(1, len(rows)) * _CELL), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * _CELL
        caption = "\n".join(textwrap.wrap(row["query"], 28)[:5]) + f"\nrank {row['rank']}"
        draw.multiline_text((6, y + 6), caption, fill="black", font=font)
        cells = [(row["right"], (30, 160, 60))] + [(h["image"], (200, 40, 40)) for h in row["top"]]
        for c, (path, colour) in enumerate(cells):
            x = _TEXT_WIDTH + c * _CELL
            right = path == row["right"]
            draw.rectangle((x + 1, y + 1, x + _CELL - 2, y + _CELL - 2),
                           outline=(30, 160, 60) if right else colour, width=3)
            thumb = _thumb(path)
            sheet.paste(thumb, (x + (_CELL - thumb.width) // 2, y + (_CELL - thumb.height) // 2))
    return sheet


def write_failures(report: dict[str, Any], folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``folder/<dataset--model>.md`` and ``.png`` for a report with ``failures``; returns both paths."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    name = slug(report)
    png, md = root / f"{name}.png", root / f"{name}.md"
    buf = io.BytesIO()
    contact_sheet(report["failures"]["t2i"]).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(png, buf.getvalue())
    atomic_write_bytes(md, failures_markdown(report, png.name).encode("utf-8"))
    return md, png
