"""Rendering evaluation reports: JSON file, Markdown comparison table, recall-vs-K plot."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._utils import atomic_write_bytes, require
from ..errors import InputError

PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """Fail before a long run, not after it, when the plot file type is not one we can write."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in PLOT_FORMATS:
        raise InputError(f"--plot {path}: file must end in {', '.join('.' + f for f in PLOT_FORMATS)}")


def reports_json(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One run: the report itself. Several: ``{"runs": [...]}`` in the order they ran."""
    return dict(reports[0]) if len(reports) == 1 else {"runs": list(reports)}


def write_json(reports: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    data = json.dumps(reports_json(reports), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_bytes(Path(path), data.encode("utf-8"))


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


COLUMNS = ("dataset", "model", "index", "images", "texts", "i2t R@1", "i2t R@5", "i2t R@10", "t2i R@1",
           "t2i R@5", "t2i R@10", "RSUM", "medR i2t/t2i", "img/s", "query ms p50", "index size",
           "R@10 vs exact")


def retrieval_reports(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Recall@K runs (matching-set runs have their own tables)."""
    return [r for r in reports if r.get("task", "retrieval") == "retrieval"]


MATCHING_COLUMNS = ("kind", "groups", "i2t acc", "t2i acc", "text", "image", "group",
                    "chance i2t/t2i/group", "trained on")


def matching_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per kind of a matching-set run, then the mean over kinds (percent)."""
    rows = []
    for kind, m in [*report["kinds"].items(), ("mean", {**report["overall"], "groups": report["n_groups"],
                                                        "groups_with_trained_images": None})]:
        c = m["chance"]
        trained = m.get("groups_with_trained_images")
        rows.append([kind, str(m["groups"]), _num(m["i2t_accuracy"]), _num(m["t2i_accuracy"]), _num(m["text_score"]),
                     _num(m["image_score"]), _num(m["group_score"]),
                     f"{_num(c['i2t_accuracy'])}/{_num(c['t2i_accuracy'])}/{_num(c['group_score'])}",
                     "–" if trained is None else f"{trained} groups"])
    return rows


def table_rows(reports: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per report, cells already formatted (shared by Markdown and the terminal table)."""
    rows = []
    for r in retrieval_reports(reports):
        i2t, t2i = r["i2t"], r["t2i"]
        rows.append([
            r["dataset"] + (f" ({r['split']})" if r.get("split") else ""), r["model"], r["index"],
            str(r["n_images"]), str(r["n_texts"]),
            _num(i2t["R@1"]), _num(i2t["R@5"]), _num(i2t["R@10"]),
            _num(t2i["R@1"]), _num(t2i["R@5"]), _num(t2i["R@10"]), _num(r["rsum"]),
            f"{_num(i2t['median_rank'], 0)}/{_num(t2i['median_rank'], 0)}",
            _num(r.get("images_per_second")), _num(r["latency_ms"]["p50"], 3), _bytes(r["index_bytes"]),
            _vs_exact(r),
        ])
    return rows


TERMINAL_COLUMNS = ("run", "i2t\nR@1/5/10", "t2i\nR@1/5/10", "RSUM", "ms/\nquery", "index\nsize", "vs\nexact")


def _vs_exact(report: dict[str, Any]) -> str:
    """Recall@10 of an approximate kind against exact search (t2i), as a fraction; '-' for exact."""
    value = report.get("recall10_vs_exact")
    return "-" if value is None else f"{value:.3f}"


def terminal_tables(reports: Sequence[dict[str, Any]]) -> list[tuple[str, list[list[str]]]]:
    """The comparison for a terminal: one ``(title, rows)`` per dataset, a row per model · index.

    Narrower than the Markdown table (encoding speed and medians stay in --md/--json) so that it
    fits an 80-column terminal.
    """
    groups: dict[str, list[list[str]]] = {}
    for r in retrieval_reports(reports):
        split = f"{r['split']}, " if r.get("split") else ""
        title = r["dataset"] + f" ({split}{r['n_images']} images, {r['n_texts']} texts)"
        run = r["model"] if r["index"] == "exact" else f"{r['model']} · {r['index']}"
        rec = ["/".join(_num(r[d][f"R@{k}"]) for k in (1, 5, 10)) for d in ("i2t", "t2i")]
        groups.setdefault(title, []).append([run, *rec, _num(r["rsum"]), _num(r["latency_ms"]["p50"], 3),
                                             _bytes(r["index_bytes"]), _vs_exact(r)])
    return list(groups.items())


def _range(pair: Sequence[float]) -> str:
    return f"[{pair[0]:.1f}, {pair[1]:.1f}]"


def uncertainty_lines(reports: Sequence[dict[str, Any]]) -> list[str]:
    """One line per run with confidence intervals, and its paired test against the first run of its
    dataset (``--ci``); nothing when no run has them."""
    lines = []
    for r in reports:
        ci = r.get("ci")
        if not ci:
            continue
        run = r["model"] if r["index"] == "exact" else f"{r['model']} · {r['index']}"
        line = (f"{r['dataset']} · {run}: {100 * ci['level']:.0f} % CI ({ci['resamples']} image resamples) "
                f"RSUM {_range(ci['rsum'])}, t2i R@1 {_range(ci['t2i']['R@1'])}, i2t R@1 {_range(ci['i2t']['R@1'])}")
        cmp = r.get("compared_to")
        if cmp:
            line += (f"; vs {cmp['baseline']}: RSUM {cmp['rsum_difference']:+.1f} {_range(cmp['rsum_difference_ci'])}, "
                     + (f"p < {1 / cmp['resamples']:.3g}" if cmp["p_value"] == 0 else f"p = {cmp['p_value']:.3f}"))
        lines.append(line)
    return lines


def robustness_lines(reports: Sequence[dict[str, Any]]) -> list[str]:
    """One line per (run, perturbation): RSUM and t2i R@1 under it, and the drop from clean images."""
    lines, seen = [], set()
    for r in reports:
        key = (r["dataset"], r["model"])
        if not r.get("perturbations") or key in seen:
            continue  # one per model and dataset: the figures are on exact scores, whatever the index
        seen.add(key)
        for spec, p in r["perturbations"].items():
            lines.append(f"{r['dataset']} · {r['model']} · {spec}: RSUM {p['rsum']:.1f} ({-p['rsum_drop']:+.1f}), "
                         f"t2i R@1 {p['t2i']['R@1']:.1f} ({-p['t2i_r1_drop']:+.1f}), "
                         f"i2t R@1 {p['i2t']['R@1']:.1f} ({-p['i2t_r1_drop']:+.1f})")
    return lines


def language_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for lang, m in report.get("per_language", {}).items():
        rows.append([lang, _num(m["i2t"]["R@1"]), _num(m["i2t"]["R@5"]), _num(m["i2t"]["R@10"]),
                     _num(m["t2i"]["R@1"]), _num(m["t2i"]["R@5"]), _num(m["t2i"]["R@10"]), _num(m["rsum"])])
    return rows


LANGUAGE_COLUMNS = ("language", "i2t R@1", "i2t R@5", "i2t R@10", "t2i R@1", "t2i R@5", "t2i R@10", "RSUM")
"""Markdown headers; the terminal splits them over two lines (see ``terminal_header``)."""


def terminal_header(column: str) -> str:
    return column.replace(" ", "\n", 1) if column.startswith(("i2t", "t2i")) else column


def mrv_text(mrv: dict[str, Any]) -> str:
    return f"MRV i2t {_num(mrv['i2t'], 2)}, t2i {_num(mrv['t2i'], 2)}; lower is more consistent"


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 3) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines


def to_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """A comparison table (recall in %, ties counted against the query), plus per-language tables."""
    matching = [r for r in reports if r.get("task") == "matching"]
    reports = retrieval_reports(reports)
    lines: list[str] = []
    for r in matching:
        lines += [f"**{r['dataset']} · {r['model']}**: matching within groups (%, ties wrong)", ""]
        lines += _md_table(MATCHING_COLUMNS, matching_rows(r), text_columns=1) + [""]
    if not reports:
        return "\n".join(lines)
    lines += _md_table(COLUMNS, table_rows(reports))
    tie = {r.get("tie_rule") for r in reports}
    protocols = sorted({r.get("protocol") or "itr" for r in reports})
    lines += ["", f"Recall in %; protocol: {', '.join(protocols)}; ties: {', '.join(sorted(t for t in tie if t))}; "
              "query ms: one text query, top-10 images, embedding excluded."]
    ci = uncertainty_lines(reports)
    if ci:
        lines += ["", *(f"- {line}" for line in ci)]
    robust = robustness_lines(reports)
    if robust:
        lines += ["", "Robustness (exact scores; change from clean images in parentheses):", "",
                  *(f"- {line}" for line in robust)]
    for r in reports:
        if "per_language" not in r:
            continue
        lines += ["", f"**{r['dataset']} · {r['model']} · {r['index']}**: per language ({mrv_text(r['mrv'])})", ""]
        lines += _md_table(LANGUAGE_COLUMNS, language_rows(r), text_columns=1)
    return "\n".join(lines) + "\n"


def write_markdown(reports: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    atomic_write_bytes(Path(path), to_markdown(reports).encode("utf-8"))


def plot_recall(reports: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Recall@K for K = 1..50, both directions side by side, one line per report (PNG/SVG/PDF by suffix)."""
    check_plot_path(path)
    matplotlib = require("matplotlib", "eval", "the recall plot (--plot)")
    matplotlib.use("Agg")  # files only: never open a window, works without a display
    import io

    import matplotlib.pyplot as plt

    reports = retrieval_reports(reports)
    if not reports:
        raise InputError("--plot draws Recall@K curves: no retrieval dataset was evaluated")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, direction, title in zip(axes, ("i2t", "t2i"), ("image → text", "text → image"), strict=True):
        for r in reports:
            curve = r["recall_curve"][direction]
            label = f"{r['model']} · {r['index']}" + (f" · {r['dataset']}" if len({x['dataset'] for x in reports}) > 1
                                                     else "")
            ax.plot(range(1, len(curve) + 1), curve, label=label, linewidth=1.6)
        ax.set_title(title)
        ax.set_xlabel("K")
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10, 20, 50], labels=["1", "2", "5", "10", "20", "50"])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Recall@K (%)")
    axes[0].set_ylim(0, 100)
    axes[1].legend(loc="lower right", fontsize=8)
    names = sorted({r["dataset"] + (f" ({r['split']})" if r.get("split") else "") for r in reports})
    fig.suptitle(", ".join(names))
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".").lower()
    fig.savefig(buf, format=fmt, dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
