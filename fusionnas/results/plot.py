"""Draw a study's objectives with the Pareto frontier highlighted and the conv baseline marked.

What is drawn (:func:`plot_layers`): the trials of the highest rung reached,
since a lower rung's accuracy comes from fewer training steps and is not
comparable (the caption says how many were left out), and the infeasible
trials (never trained: their costs, an accuracy drawn at 0). The frontier is
a line through its points, each labelled with its trial number; the conv
baseline is marked once, as an open star beneath the points, so it never
hides a frontier point. The title names the study, what the caller passes
(dataset and budget, from the CLI) and the objectives.

``.png`` is drawn by matplotlib (headless, Agg); ``.html`` is an interactive
plotly page (zoom, hover shows trial, archid, operators and the objectives)
with plotly.js inline, so it opens offline, and the frontier as a table. With
two objectives the plot is one scatter (the first objective on the y axis);
with more, one panel per further objective against the first; with one, the
objective per trial number.
"""
from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fusionnas.errors import UserError
from fusionnas.metrics import label_of
from fusionnas.results.pareto import format_frontier

__all__ = ["PLOT_FORMATS", "PlotLayers", "check_plot_path", "plot_layers", "plot_frontier"]

PLOT_FORMATS = (".png", ".html", ".htm")


@dataclass(frozen=True)
class PlotLayers:
    """The rows of a trials frame that a plot draws, and the caption that says what was left out."""

    points: pd.DataFrame  # feasible COMPLETE trials at the highest rung reached
    infeasible: pd.DataFrame  # COMPLETE but over a limit: never trained
    front: pd.DataFrame  # the Pareto frontier (``is_pareto``)
    baseline: pd.DataFrame  # the conv baseline's drawn row: none or one
    caption: str


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a Path; a UserError unless it ends in one of :data:`PLOT_FORMATS` and its folder exists.

    Callers check it before any output, so a bad name costs nothing.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise UserError(f"`path` {path}: unknown format {path.suffix or '(none)'!r}; name the file .png or .html")
    if not path.resolve().parent.is_dir():
        raise UserError(f"`path` {path}: folder {path.resolve().parent} does not exist; create it first")
    return path


def plot_layers(frame: pd.DataFrame, baseline_archid: str | None = None) -> PlotLayers:
    """What :func:`plot_frontier` draws of ``frame`` (see the module docstring)."""
    done = frame[frame["state"] == "COMPLETE"]
    feasible = done["feasible"].fillna(False).astype(bool)
    rung = done["rung"] if "rung" in done else pd.Series(0, index=done.index)
    top = int(rung[feasible].max()) if feasible.any() else 0
    points, lower = done[feasible & (rung == top)], int((feasible & (rung < top)).sum())
    infeasible = done[~feasible]
    drawn = done.index.isin(points.index) | ~feasible
    baseline = done[drawn & (done["archid"] == baseline_archid)].head(1)  # none when the archid is None
    parts = [f"{len(points)} trials" + (f" at rung {top}, the highest reached" if top or lower else "")]
    if lower:
        parts.append(f"{lower} at lower rungs (fewer training steps, not comparable) not drawn")
    if len(infeasible):
        parts.append(f"{len(infeasible)} infeasible (never trained)")
    if baseline_archid and baseline.empty and (done["archid"] == baseline_archid).any():
        parts.append(f"the conv baseline did not reach rung {top}")
    return PlotLayers(points, infeasible, frame[frame["is_pareto"].astype(bool)], baseline, "; ".join(parts))


def _pairs(objectives: Mapping[str, str]) -> list[tuple[str, str]]:
    """(x, y) columns per panel: the first objective on y against each other one (or the trial number)."""
    names = list(objectives)
    return [("number", names[0])] if len(names) == 1 else [(x, names[0]) for x in names[1:]]


def _log_scale(frame: pd.DataFrame, x: str) -> bool:
    """FLOPs and parameters that span more than a decade are drawn on a log axis."""
    spread = frame[x].astype(float)
    return x in ("flops", "params") and spread.min() > 0 and spread.max() > 10 * spread.min()


def _heading(objectives: Mapping[str, str], title: str) -> str:
    shown = ", ".join(f"{label_of(name)} ({direction[:3]})" for name, direction in objectives.items())
    return f"{title}\nobjectives: {shown}" if title else f"objectives: {shown}"


def _wrapped(text: str, width: int) -> str:
    """``text`` with each line wrapped at ``width`` characters (neither library wraps a title)."""
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())


def _figure(frame: pd.DataFrame, objectives: Mapping[str, str], baseline_archid: str | None, title: str):
    """The matplotlib figure (and pyplot, to close it)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = plot_layers(frame, baseline_archid)
    pairs = _pairs(objectives)
    fig, axes = plt.subplots(1, len(pairs), figsize=(6.4 * len(pairs), 5.2), squeeze=False, layout="constrained")
    width = 84 * len(pairs)  # characters of a 10-point title across the figure
    for ax, (x, y) in zip(axes[0], pairs):
        if not layers.baseline.empty:  # beneath everything, open: a point on it stays visible
            ax.scatter(layers.baseline[x], layers.baseline[y].fillna(0.0), s=320, marker="*", facecolors="none",
                       edgecolors="tab:orange", linewidths=1.5, zorder=1, label="conv baseline")
        ax.scatter(layers.points[x], layers.points[y], s=22, c="0.6", zorder=2, label="feasible trials")
        if not layers.infeasible.empty:
            ax.scatter(layers.infeasible[x], layers.infeasible[y].fillna(0.0), s=26, marker="x", c="tab:red",
                       zorder=2, label="infeasible (not trained)")
        if not layers.front.empty:
            ordered = layers.front.sort_values(x)
            ax.plot(ordered[x], ordered[y], "-o", c="tab:blue", ms=6, zorder=3, label="Pareto frontier",
                    drawstyle="default" if x == "number" else "steps-post")
            for _, row in ordered.iterrows():
                ax.annotate(f"#{int(row['number'])}", (row[x], row[y]), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, color="tab:blue", zorder=4)
        if _log_scale(frame[frame["state"] == "COMPLETE"], x):
            ax.set_xscale("log")
        ax.set_xlabel("trial" if x == "number" else label_of(x))
        ax.set_ylabel(label_of(y))
        ax.grid(alpha=0.3)
    axes[0][0].set_title(_wrapped(layers.caption, width * 5 // 4 // len(pairs)), fontsize=8)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(_wrapped(_heading(objectives, title), width), fontsize=10)
    return fig, plt


def _hover(rows: pd.DataFrame, objectives: Mapping[str, str]) -> list[str]:
    """Hover text per row: trial, archid, operators, every objective."""
    return [f"trial {int(r['number'])} ({r['archid']})<br>{html.escape(str(r.get('ops', '')))}<br>"
            + "<br>".join(f"{label_of(name)}: {r[name]:.4g}" for name in objectives)
            for _, r in rows.iterrows()]


def _plotly_html(frame: pd.DataFrame, objectives: Mapping[str, str], baseline_archid: str | None,
                 title: str) -> str:
    """The interactive plot as an HTML fragment with plotly.js inline."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers = plot_layers(frame, baseline_archid)
    pairs = _pairs(objectives)
    fig = make_subplots(rows=1, cols=len(pairs))
    for col, (x, y) in enumerate(pairs, start=1):
        first = col == 1
        traces = [
            ("conv baseline", layers.baseline, dict(symbol="star-open", size=22, color="orange",
                                                    line=dict(width=2)), "markers"),
            ("feasible trials", layers.points, dict(size=7, color="grey"), "markers"),
            ("infeasible (not trained)", layers.infeasible, dict(symbol="x", size=8, color="red"), "markers"),
            ("Pareto frontier", layers.front.sort_values(x), dict(size=9, color="royalblue"), "lines+markers+text"),
        ]
        for name, rows, marker, mode in traces:
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(
                x=rows[x], y=rows[y].fillna(0.0), mode=mode, name=name, marker=marker, showlegend=first,
                legendgroup=name, hovertext=_hover(rows, objectives), hoverinfo="text",
                text=[f"#{int(n)}" for n in rows["number"]] if "text" in mode else None,
                textposition="top right", line=dict(shape="linear" if x == "number" else "hv")),
                row=1, col=col)
        fig.update_xaxes(title_text="trial" if x == "number" else label_of(x), row=1, col=col,
                         type="log" if _log_scale(frame[frame["state"] == "COMPLETE"], x) else None)
        fig.update_yaxes(title_text=label_of(y), row=1, col=col)
    heading = html.escape(_wrapped(_heading(objectives, title), 90 * len(pairs))).replace("\n", "<br>")
    caption = html.escape(_wrapped(layers.caption, 120 * len(pairs))).replace("\n", "<br>")
    fig.update_layout(title=dict(text=f"{heading}<br><sup>{caption}</sup>"), margin=dict(t=140),
                      height=560, width=max(760, 620 * len(pairs)), template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=True)


def plot_frontier(frame: pd.DataFrame, objectives: Mapping[str, str], path: str | Path, *,
                  baseline_archid: str | None = None, title: str = "") -> Path:
    """Write the plot of ``frame`` (from :func:`~fusionnas.results.trials_frame`) to ``path``.

    ``.png`` writes the image, ``.html`` an interactive page with the frontier
    table; any other suffix, or a missing folder, is a UserError (see
    :func:`check_plot_path`). ``title`` heads the plot (the CLI names the study,
    its dataset and budget); the objectives are added beneath it.
    """
    path = check_plot_path(path)
    if path.suffix.lower() == ".png":
        fig, plt = _figure(frame, objectives, baseline_archid, title)
        try:
            fig.savefig(path, dpi=120)
        finally:
            plt.close(fig)
        return path
    heading = html.escape(title or "Pareto frontier")
    table = html.escape(format_frontier(frame, objectives))
    path.write_text(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{heading}</title></head>\n<body>\n"
        f"{_plotly_html(frame, objectives, baseline_archid, title)}\n"
        f"<h2>Frontier</h2>\n<pre>{table}</pre>\n</body></html>\n",
        encoding="utf-8",
    )
    return path
