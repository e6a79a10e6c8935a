"""The search's report: Pareto front as Parquet, a self-contained HTML page, a console table.

``report.html`` loads nothing from anywhere: plots are PNGs rendered with matplotlib's Agg
canvas and embedded as base64, the stylesheet and the small table-sorting script are inline,
so the file can be mailed, archived with the run or opened offline. Every string that comes
from the trials table or the config is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from rich.console import Console
from rich.table import Table

from simulator.errors import ConfigError
from simulator.metrics.outputs import _write_atomic, _write_parquet
from vidur_search.pareto import (
    DEFAULT_OBJECTIVES,
    non_dominated,
    plan_mask,
    require_columns,
    validate_objectives,
)
from vidur_search.plans import (
    _rank_best,
    best_per_slo,
    pareto_front_by_workload,
    pareto_mask_by_workload,
    plan_for_load,
)

#: Columns the report reads (the rest of the trials table is shown when present).
REPORT_COLUMNS: tuple[str, ...] = (
    "trial_id", "status", "error", "sku", "tp", "pp", "replicas", "scheduler", "batch_cap",
    "chunk_size", "workload", "capacity_qps", "capacity_per_dollar", "cost_per_hour",
    "ttft_p90", "tbt_p99",
)

# Columns of the table of all plans, in this order, when the trials table has them.
_PLAN_COLUMNS = (
    "trial_id", "workload", "model", "sku", "node", "tp", "pp", "replicas", "scheduler",
    "batch_cap", "chunk_size", "expert_parallel", "num_gpus", "cost_per_hour", "capacity_qps",
    "capacity_per_dollar", "cost_per_million_tokens", "tokens_per_s", "ttft_p50", "ttft_p90",
    "ttft_p99", "tbt_p50", "tbt_p99", "e2e_p90", "pareto",
)
_CONFIG_COLUMNS = ("sku", "tp", "pp", "replicas", "scheduler", "batch_cap", "chunk_size",
                   "expert_parallel")
_PLOT_X = (("ttft_p90", "TTFT P90 (s)"), ("tbt_p99", "TBT P99 (s)"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f3f3f3}td.s{text-align:left}
table.sortable th{cursor:pointer}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}
table.sortable th[data-dir=desc]::after{content:" \\25BC"}
tr.pareto td{background:#fff6d5}td.err{text-align:left;white-space:pre-wrap;max-width:60em}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#666}img{max-width:100%}
"""

# Sorts a table.sortable on a header click: numbers numerically (data-v holds the raw value),
# text alphabetically, missing values last in either direction.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("data-dir") !== "asc";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      var body = t.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[i].getAttribute("data-v"), y = b.cells[i].getAttribute("data-v");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = parseFloat(x), ny = parseFloat(y), r;
        if (!isNaN(nx) && !isNaN(ny)) { r = nx < ny ? -1 : (nx > ny ? 1 : 0); }
        else { r = x < y ? -1 : (x > y ? 1 : 0); }
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float | np.floating) and math.isnan(v))


def _fmt(v: Any) -> str:
    """Display form of a cell: 4 significant digits for floats, n/a for missing."""
    if _missing(v):
        return "n/a"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.4g}"
    return str(v)


def _sort_value(v: Any, numeric: bool) -> str:
    """The data-v attribute the sorting script reads: raw number, text, or "" when missing."""
    if _missing(v):
        return ""
    if numeric:
        if isinstance(v, int | np.integer):
            return str(int(v))
        f = float(v)
        return "Infinity" if f == math.inf else "-Infinity" if f == -math.inf else repr(f)
    return str(v)


def html_table(
    df: pd.DataFrame, columns: Sequence[str] | None = None, *, table_id: str = "",
    sortable: bool = False, highlight: np.ndarray | None = None, error_columns: Sequence[str] = (),
) -> str:
    """An escaped HTML table of ``df[columns]``; ``highlight`` marks rows of class "pareto"."""
    cols = [c for c in (columns if columns is not None else df.columns) if c in df.columns]
    numeric = {c: _is_numeric(df[c]) for c in cols}
    attrs = (f' id="{_e(table_id)}"' if table_id else "") + (
        ' class="sortable"' if sortable else "")
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    rows = []
    for i, rec in enumerate(df[cols].itertuples(index=False, name=None)):
        cls = ' class="pareto"' if highlight is not None and highlight[i] else ""
        cells = []
        for c, v in zip(cols, rec, strict=True):
            kind = "err" if c in error_columns else ("" if numeric[c] else "s")
            klass = f' class="{kind}"' if kind else ""
            cells.append(f'<td{klass} data-v="{_e(_sort_value(v, numeric[c]))}">'
                         f"{_e(_fmt(v))}</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f"<table{attrs}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pareto_figure(plans: pd.DataFrame, front: np.ndarray, x: str, xlabel: str) -> Figure | None:
    """Capacity per dollar vs ``x``, one panel per workload, colour = SKU, marker = scheduler.

    Rings mark the plans on the Pareto front of all objectives; the dashed step line is the
    2-D frontier of this panel (the most capacity per dollar reachable within each latency).
    """
    finite = np.isfinite(pd.to_numeric(plans[x], errors="coerce").to_numpy(np.float64))
    finite &= np.isfinite(pd.to_numeric(plans["capacity_per_dollar"], errors="coerce")
                          .to_numpy(np.float64))
    plans, front = plans.loc[finite], front[finite]
    if plans.empty:
        return None
    workloads = sorted(plans["workload"].astype(str).unique())
    skus = sorted(plans["sku"].astype(str).unique())
    scheds = sorted(plans["scheduler"].astype(str).unique())
    cmap = colormaps["tab10"]
    colour = {s: cmap(i % 10) for i, s in enumerate(skus)}
    marker = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(scheds)}
    ncols = min(3, len(workloads))
    nrows = math.ceil(len(workloads) / ncols)
    fig = Figure(figsize=(4.6 * ncols + 1.8, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, workload in enumerate(workloads):
        ax = axes[k // ncols][k % ncols]
        sel = (plans["workload"].astype(str) == workload).to_numpy()
        wl, on_front = plans.loc[sel], front[sel]
        xs = wl[x].to_numpy(np.float64)
        ys = wl["capacity_per_dollar"].to_numpy(np.float64)
        sk = wl["sku"].astype(str).to_numpy()
        sc = wl["scheduler"].astype(str).to_numpy()
        for s in skus:
            for m in scheds:
                g = (sk == s) & (sc == m)
                if g.any():
                    ax.scatter(xs[g], ys[g], color=colour[s], marker=marker[m], s=28,
                               alpha=0.8, linewidths=0)
        if on_front.any():
            ax.scatter(xs[on_front], ys[on_front], s=110, facecolors="none",
                       edgecolors="black", linewidths=1.3, zorder=3)
        nd = non_dominated(np.column_stack([xs, -ys]))
        order = np.argsort(xs[nd], kind="stable")
        ax.plot(xs[nd][order], ys[nd][order], "--", color="0.35", lw=1,
                drawstyle="steps-post", zorder=2)
        lo, hi = float(xs.min()), float(xs.max())
        if lo > 0 and hi / lo > 30:
            ax.set_xscale("log")
        ax.set_title(workload, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("capacity per dollar (QPS per $/h)")
        ax.grid(alpha=0.3)
    for k in range(len(workloads), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles = [Line2D([], [], ls="", marker="o", color=colour[s], label=f"SKU {s}")
               for s in skus]
    handles += [Line2D([], [], ls="", marker=marker[m], color="0.3", label=f"scheduler {m}")
                for m in scheds]
    handles += [Line2D([], [], ls="", marker="o", markersize=10, markerfacecolor="none",
                       markeredgecolor="black", label="Pareto (all objectives)"),
                Line2D([], [], ls="--", color="0.35", label="2-D frontier")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def trial_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials in all, plans (ok, capacity > 0), failed, and ok with zero capacity."""
    require_columns(trials, ("status", "capacity_qps"))
    plans = plan_mask(trials)
    ok = (trials["status"].astype(str) == "ok").to_numpy()
    return {"trials": len(trials), "plans": int(plans.sum()), "failed": int((~ok).sum()),
            "zero_capacity": int((ok & ~plans).sum())}


def count_line(counts: Mapping[str, int]) -> str:
    """One line: ``N trials: A ok (P plans, Z zero capacity), F failed``."""
    ok = counts["plans"] + counts["zero_capacity"]
    return (f"{counts['trials']} trials: {ok} ok ({counts['plans']} plans, "
            f"{counts['zero_capacity']} zero capacity), {counts['failed']} failed")


def _best_per_workload(plans: pd.DataFrame) -> pd.DataFrame:
    if plans.empty:
        return plans
    ranked = _rank_best(plans)
    return ranked.groupby(ranked["workload"].astype(str), sort=True).head(1).sort_values(
        "workload", kind="stable")


def write_report(
    out_dir: str | Path,
    trials: pd.DataFrame,
    *,
    config_yaml: str,
    objectives: Mapping[str, str] = DEFAULT_OBJECTIVES,
    tiers: Mapping[str, Mapping[str, float]] | None = None,
    target_qps: float | None = None,
    title: str = "",
) -> dict[str, Path]:
    """Write ``pareto.parquet`` and a self-contained ``report.html`` into ``out_dir``.

    ``pareto.parquet`` holds the Pareto front of ``objectives`` computed within each workload.
    The page shows the trial counts and best plans, capacity-per-dollar vs TTFT P90 and vs
    TBT P99 plots, the best plan per SLO tier (``tiers``, see ``plans.best_per_slo``), the
    cheapest plans for ``target_qps``, a sortable table of every plan, the failed and
    zero-capacity trials, and ``config_yaml``. Inputs are validated before anything is written.
    Returns ``{"pareto": path, "html": path}``.
    """
    require_columns(trials, REPORT_COLUMNS)
    objectives = validate_objectives(trials, objectives)
    if not isinstance(config_yaml, str):
        raise ConfigError("config_yaml", type(config_yaml).__name__, "must be the config as text")
    tier_table = best_per_slo(trials, tiers) if tiers is not None else None
    load_table = plan_for_load(trials, target_qps) if target_qps is not None else None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_front = pareto_mask_by_workload(trials, objectives)
    front = pareto_front_by_workload(trials, objectives)
    paths = {"pareto": _write_parquet(front.reset_index(drop=True), out / "pareto.parquet")}

    counts = trial_counts(trials)
    pmask = plan_mask(trials)
    plans = trials.loc[pmask].assign(pareto=on_front[pmask])
    plans = _rank_best(plans)
    title = title or "vidur_search capacity plans"
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="note">generated {_e(datetime.now(UTC).isoformat(timespec="seconds"))}'
             f"; objectives: {_e(', '.join(f'{k} ({v})' for k, v in objectives.items()))}</p>",
             "<h2>Summary</h2>",
             f'<p id="counts">{_e(count_line(counts))}. A plan is an ok trial with capacity '
             f"&gt; 0; zero capacity means no request rate met the trial's SLO. "
             f"{len(front)} plan(s) on the per-workload Pareto fronts.</p>"]
    if plans.empty:
        parts.append('<p id="no-plans"><strong>No plans: every trial failed or had zero '
                     "capacity, so there is nothing to plot or rank.</strong></p>")
    else:
        parts.append("<p>Best plan per workload (most capacity per dollar):</p>")
        parts.append(html_table(_best_per_workload(plans), _PLAN_COLUMNS, table_id="best"))
        parts.append("<h2>Pareto plots</h2>")
        for x, label in _PLOT_X:
            fig = _pareto_figure(plans, plans["pareto"].to_numpy(bool), x, label)
            if fig is None:
                parts.append(f"<p>No plan has a finite {_e(x)}; nothing to plot.</p>")
                continue
            parts.append(f'<p><img alt="capacity per dollar vs {_e(x)}" '
                         f'src="data:image/png;base64,{_png_base64(fig)}"></p>')
        parts.append("<h2>Pareto front</h2>")
        parts.append(html_table(front, _PLAN_COLUMNS[:-1], table_id="pareto"))
    if tier_table is not None:
        parts.append("<h2>Best plan per SLO tier</h2>")
        parts.append(html_table(tier_table, ["tier", "workload", "bounds", "met", "reason",
                                             *_PLAN_COLUMNS[2:-1]], table_id="tiers"))
    if load_table is not None:
        parts.append(f"<h2>Plans for a target load of {_e(_fmt(float(target_qps)))} QPS</h2>")
        if load_table.empty:
            parts.append("<p>No plan to scale out.</p>")
        else:
            parts.append('<p class="note">Capacity assumed to scale linearly with replicas; '
                         "the 5 cheapest per workload.</p>")
            parts.append(html_table(load_table, [
                "workload", "rank", "replicas_needed", "gpus_needed", "cost_per_hour_at_target",
                "headroom", "per_replica_qps", *_CONFIG_COLUMNS, "ttft_p90", "tbt_p99",
                "trial_id"], table_id="load"))
    parts.append(f"<h2>All plans ({len(plans)})</h2>")
    if plans.empty:
        parts.append("<p>None.</p>")
    else:
        parts.append('<p class="note">Click a column header to sort; Pareto rows are '
                     "highlighted.</p>")
        parts.append(html_table(plans, _PLAN_COLUMNS, table_id="plans", sortable=True,
                                highlight=plans["pareto"].to_numpy(bool)))
    failed = trials.loc[trials["status"].astype(str) != "ok"]
    parts.append(f"<h2>Failed trials ({len(failed)})</h2>")
    parts.append(html_table(failed, ["trial_id", "workload", *_CONFIG_COLUMNS, "status",
                                     "error"], table_id="failed", error_columns=("error",))
                 if len(failed) else "<p>None.</p>")
    zero = trials.loc[(trials["status"].astype(str) == "ok").to_numpy() & ~pmask]
    parts.append(f"<h2>Zero-capacity trials ({len(zero)})</h2>")
    parts.append(html_table(zero, ["trial_id", "workload", *_CONFIG_COLUMNS,
                                   "capacity_reason"], table_id="zero",
                            error_columns=("capacity_reason",))
                 if len(zero) else "<p>None.</p>")
    parts.append(f"<h2>Configuration</h2><pre>{_e(config_yaml)}</pre>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + f"\n<script>{_JS}</script>\n</body></html>\n")
    paths["html"] = _write_atomic(out / "report.html",
                                  lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return paths


def console_summary(trials: pd.DataFrame, console: Console | None = None, top: int = 10) -> Table:
    """Print the ``top`` plans by capacity per dollar as a rich table, then the trial counts.

    Returns the table (also for tests). An empty table with a "no plans" caption when every
    trial failed or had zero capacity.
    """
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError("top", top, "must be an integer >= 1")
    require_columns(trials, REPORT_COLUMNS)
    console = console or Console()
    counts = trial_counts(trials)
    plans = _rank_best(trials.loc[plan_mask(trials)]).head(top)
    table = Table(title=f"Top {min(top, counts['plans'])} of {counts['plans']} plans by "
                        "capacity per dollar")
    spec = [("sku", "sku", "left"), ("tp", "tp", "right"), ("pp", "pp", "right"),
            ("replicas", "replicas", "right"), ("scheduler", "scheduler", "left"),
            ("batch_cap", "batch_cap", "right"), ("chunk_size", "chunk", "right"),
            *([("expert_parallel", "EP", "right")]
              if "expert_parallel" in plans and (plans["expert_parallel"] > 1).any() else []),
            ("workload", "workload", "left"), ("capacity_qps", "capacity QPS", "right"),
            ("cost_per_hour", "$/h", "right"), ("capacity_per_dollar", "QPS per $/h", "right"),
            ("ttft_p90", "TTFT p90 (s)", "right"), ("tbt_p99", "TBT p99 (s)", "right")]
    for _, header, justify in spec:
        table.add_column(header, justify=justify, overflow="fold")
    for rec in plans[[c for c, _, _ in spec]].itertuples(index=False, name=None):
        table.add_row(*(_fmt(v) for v in rec))
    if plans.empty:
        table.caption = "no plans: every trial failed or had zero capacity"
    console.print(table)
    console.print(count_line(counts), markup=False, highlight=False)
    return table
