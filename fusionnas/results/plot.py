"""Draw a study's objectives with the Pareto frontier highlighted and the conv baseline marked.

matplotlib draws every plot (headless, Agg). ``.png`` gives the image; a
name ending ``.html`` gives a small self-contained page with the same image
inline (base64) and the frontier as a table, so no second plotting library
is needed. With two objectives the plot is one scatter (the first objective
on the y axis); with more, one panel per further objective against the first;
with one, the objective per trial number.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fusionnas.errors import UserError
from fusionnas.metrics import label_of
from fusionnas.results.pareto import format_frontier

__all__ = ["plot_frontier"]



def _figure(frame: pd.DataFrame, objectives: Mapping[str, str], baseline_archid: str | None, title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(objectives)
    pairs = [("number", names[0])] if len(names) == 1 else [(x, names[0]) for x in names[1:]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(6.4 * len(pairs), 4.8), squeeze=False)
    done = frame[frame["state"] == "COMPLETE"]
    feasible = done[done["feasible"].astype(bool)]
    infeasible = done[~done["feasible"].astype(bool)]
    front = frame[frame["is_pareto"]]
    for ax, (x, y) in zip(axes[0], pairs):
        ax.scatter(feasible[x], feasible[y], s=22, c="0.6", label="feasible trials")
        if not infeasible.empty:  # costs are known; an untrained accuracy is drawn at 0
            ax.scatter(infeasible[x], infeasible[y].fillna(0.0), s=26, marker="x", c="tab:red",
                       label="infeasible (not trained)")
        if not front.empty:
            ordered = front.sort_values(x)
            ax.plot(ordered[x], ordered[y], "-o", c="tab:blue", ms=6, drawstyle="steps-post" if x != "number"
                    else "default", label="Pareto frontier")
        if baseline_archid is not None:
            base = done[done["archid"] == baseline_archid]
            if not base.empty:
                ax.scatter(base[x], base[y].fillna(0.0), s=160, marker="*", c="tab:orange", zorder=5,
                           edgecolors="k", label="conv baseline")
        spread = done[x].astype(float)
        if x in ("flops", "params") and spread.min() > 0 and spread.max() > 10 * spread.min():
            ax.set_xscale("log")
        ax.set_xlabel("trial" if x == "number" else label_of(x))
        ax.set_ylabel(label_of(y))
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, plt


def plot_frontier(frame: pd.DataFrame, objectives: Mapping[str, str], path: str | Path, *,
                  baseline_archid: str | None = None, title: str = "") -> Path:
    """Write the plot of ``frame`` (from :func:`~fusionnas.results.trials_frame`) to ``path``.

    ``.png`` writes the image, ``.html`` a page with the image inline and the
    frontier table; any other suffix is a ValueError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise UserError(f"`path` {path}: unknown format {suffix or '(none)'!r}; name the file .png or .html")
    if not path.parent.is_dir():
        raise UserError(f"`path` {path}: folder {path.parent} does not exist; create it first")
    fig, plt = _figure(frame, objectives, baseline_archid, title)
    try:
        if suffix == ".png":
            fig.savefig(path, dpi=120)
            return path
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    table = html.escape(format_frontier(frame, objectives))
    path.write_text(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title or 'Pareto frontier')}</title></head>\n"
        f"<body><h1>{html.escape(title or 'Pareto frontier')}</h1>\n"
        f"<img alt=\"objectives with the Pareto frontier\" src=\"data:image/png;base64,{image}\">\n"
        f"<h2>Frontier</h2>\n<pre>{table}</pre>\n</body></html>\n",
        encoding="utf-8",
    )
    return path
