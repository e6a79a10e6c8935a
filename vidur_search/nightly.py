"""Nightly comparison of a sweep with the previous one: what changed, and is it a regression.

Runs are result folders named ``YYYY-MM-DD_HH-MM-SS`` holding a ``trials.parquet``. The diff
compares, workload by workload, the best plan (most capacity per dollar) and the Pareto
front (points keyed by :data:`vidur_search.pareto.IDENTITY_COLUMNS`). A drop of the best
capacity per dollar beyond a tolerance, or a workload that had plans and has none now, is a
regression; :func:`exit_code` turns that into the job's exit status.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import ConfigError
from simulator.metrics.outputs import _jsonable, _write_atomic, _write_json
from vidur_search.pareto import (
    DEFAULT_OBJECTIVES,
    IDENTITY_COLUMNS,
    OPTIONAL_IDENTITY,
    plan_mask,
    require_columns,
    validate_objectives,
)
from vidur_search.plans import _rank_best, pareto_front_by_workload
from vidur_search.results import normalise

#: Exit status of the nightly job: no regression.
EXIT_OK = 0
#: Exit status of the nightly job when :func:`diff_runs` found a regression. Distinct from 1
#: (an uncaught Python error) and 2 (a usage / config error) so CI can tell them apart.
EXIT_REGRESSION = 3

RUN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")
RUN_FORMAT = "%Y-%m-%d_%H-%M-%S"
TRIALS_FILE = "trials.parquet"

# Columns of a plan reported in the diff besides its identity.
_PLAN_FIELDS = ("trial_id", "capacity_qps", "cost_per_hour", "capacity_per_dollar",
                "cost_per_million_tokens", "ttft_p90", "tbt_p99")
_REQUIRED = (*IDENTITY_COLUMNS, "status", "capacity_qps", "capacity_per_dollar",
             "cost_per_million_tokens")
#: Columns a previous run's table needs: the diff's, the default objectives' (Pareto
#: front) and the candidate key (warm start). Newer optional columns may be missing.
PREVIOUS_REQUIRED = tuple(dict.fromkeys((*_REQUIRED, *DEFAULT_OBJECTIVES, "key")))


def is_run_name(name: str) -> bool:
    """Whether ``name`` is a run folder's name: ``YYYY-MM-DD_HH-MM-SS``, a real time."""
    if not RUN_NAME.fullmatch(name):
        return False
    try:
        datetime.strptime(name, RUN_FORMAT)
    except ValueError:
        return False
    return True


def _is_run_dir(path: Path) -> bool:
    return is_run_name(path.name) and path.is_dir() and (path / TRIALS_FILE).is_file()


def latest_run(root: str | Path, exclude: str | Path | None = None) -> Path | None:
    """The newest result folder directly under ``root`` that holds a ``trials.parquet``.

    Folders are named ``YYYY-MM-DD_HH-MM-SS`` (other names and impossible dates are
    ignored), so the newest is the last by name. ``exclude`` (typically the run being
    compared) is skipped. None when there is no such folder or ``root`` does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    skip = Path(exclude).resolve() if exclude is not None else None
    runs = sorted((p for p in root.iterdir() if _is_run_dir(p) and p.resolve() != skip),
                  key=lambda p: p.name)
    return runs[-1] if runs else None


def read_previous(prev_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """The trials table of the previous run ``prev_dir`` (see :func:`latest_run`),
    normalised (a table written before a column existed gets it). An unreadable file, or
    one without the columns the comparison and the warm start need, is a ConfigError on
    ``output.dir`` naming the file and how to go on, raised before any trial runs."""
    prev_dir = Path(prev_dir)
    path = prev_dir / TRIALS_FILE
    how = (f"move {prev_dir} out of {prev_dir.parent} (the newest run left there becomes "
           "the baseline), or start a fresh nightly folder "
           "(output.dir=OTHER_ROOT/YYYY-MM-DD_HH-MM-SS)")

    def bad(problem: str) -> ConfigError:
        return ConfigError("output.dir", str(out_dir),
                           f"the previous nightly run's {path} {problem}; {how}")

    try:
        df = pd.read_parquet(path)
    except Exception as err:  # corrupt, truncated, not Parquet, unreadable
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise bad(f"cannot be read as a trials table ({reason})") from None
    missing = [c for c in PREVIOUS_REQUIRED if c not in df.columns]
    if missing:
        raise bad(f"lacks the column(s) {', '.join(missing)} the comparison needs (it has "
                  f"{', '.join(map(str, df.columns)) or 'none'}): it is not a trials table "
                  "written by this command")
    try:
        return normalise(df.to_dict("records"))
    except (TypeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise bad(f"holds values of the wrong type ({reason})") from None


def _identity(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-friendly identity of a plan: ints for integral numbers, str for the rest."""
    out: dict[str, Any] = {}
    for c in (*IDENTITY_COLUMNS, *OPTIONAL_IDENTITY):
        v = row[c] if c in row else OPTIONAL_IDENTITY[c]
        if isinstance(v, bool | np.bool_):
            out[c] = bool(v)
        elif isinstance(v, int | np.integer):
            out[c] = int(v)
        elif isinstance(v, float | np.floating):
            out[c] = int(v) if math.isfinite(v) and float(v).is_integer() else float(v)
        else:
            out[c] = str(v)
    return out


def _key(identity: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(identity[c] for c in (*IDENTITY_COLUMNS, *OPTIONAL_IDENTITY))


def _plan_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    out = _identity(row)
    for c in _PLAN_FIELDS:
        if c in row:
            v = row[c]
            if c == "trial_id":
                out[c] = str(v)
            else:
                num = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
                out[c] = None if pd.isna(num) else _jsonable(float(num))
    return out


def _pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return None
    if before == 0:
        return None
    return 100.0 * (after / before - 1.0)


def _front_ids(front: pd.DataFrame, workload: str) -> list[dict[str, Any]]:
    rows = front[front["workload"].astype(str) == workload]
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in rows.to_dict("records"):
        ident = _identity(rec)
        seen.setdefault(_key(ident), ident)
    return list(seen.values())


def diff_runs(
    prev: pd.DataFrame,
    cur: pd.DataFrame,
    objectives: Mapping[str, str] = DEFAULT_OBJECTIVES,
    *,
    tolerance: float = 0.02,
    before: str = "",
    after: str = "",
) -> dict[str, Any]:
    """Compare two trials tables workload by workload; JSON-serialisable result.

    For each workload in either table: the best plan (most capacity per dollar) before and
    after with its identity, ``best_changed``, the change of the best capacity per dollar and
    of the best plan's cost per million tokens in percent, the Pareto points (of
    ``objectives``, per workload) gained and lost as identity dicts, and ``regression`` with
    its ``reasons``: the best capacity per dollar fell by more than ``tolerance`` (a
    fraction), or the workload had plans before and has none now. ``regression`` at the top
    is true when any workload regressed. ``before``/``after`` label the runs (e.g. paths).
    """
    if (not isinstance(tolerance, int | float) or isinstance(tolerance, bool)
            or not 0 <= tolerance < 1):
        raise ConfigError("tolerance", tolerance, "must be a fraction in [0, 1), e.g. 0.02")
    for name, df in (("previous trials", prev), ("current trials", cur)):
        require_columns(df, _REQUIRED, name)
        validate_objectives(df, objectives)
    objectives = dict(objectives)
    fronts = {"prev": pareto_front_by_workload(prev, objectives),
              "cur": pareto_front_by_workload(cur, objectives)}
    plans = {"prev": prev.loc[plan_mask(prev)], "cur": cur.loc[plan_mask(cur)]}
    workloads = sorted(set(prev["workload"].astype(str)) | set(cur["workload"].astype(str)))
    out: dict[str, Any] = {"before": str(before), "after": str(after),
                           "objectives": objectives, "tolerance": float(tolerance),
                           "regression": False, "workloads": {}}
    for workload in workloads:
        best: dict[str, dict[str, Any] | None] = {}
        counts: dict[str, int] = {}
        for side in ("prev", "cur"):
            wl = plans[side][plans[side]["workload"].astype(str) == workload]
            counts[side] = len(wl)
            best[side] = _plan_summary(_rank_best(wl).iloc[0].to_dict()) if len(wl) else None
        b0, b1 = best["prev"], best["cur"]
        cpd = _pct(b0 and b0["capacity_per_dollar"], b1 and b1["capacity_per_dollar"])
        cpm = _pct(b0 and b0["cost_per_million_tokens"], b1 and b1["cost_per_million_tokens"])
        ids0 = _front_ids(fronts["prev"], workload)
        ids1 = _front_ids(fronts["cur"], workload)
        keys0, keys1 = {_key(i) for i in ids0}, {_key(i) for i in ids1}
        reasons = []
        if counts["prev"] and not counts["cur"]:
            reasons.append(f"lost all plans ({counts['prev']} before, none now)")
        if (b0 and b1 and b0["capacity_per_dollar"] is not None
                and b1["capacity_per_dollar"] is not None
                and b1["capacity_per_dollar"] < b0["capacity_per_dollar"] * (1 - tolerance)):
            reasons.append(f"best capacity per dollar fell {-cpd:.1f}% "
                           f"(tolerance {100 * tolerance:g}%)")
        out["workloads"][workload] = {
            "plans_before": counts["prev"], "plans_after": counts["cur"],
            "best_before": b0, "best_after": b1,
            "best_changed": (b0 is None) != (b1 is None)
            or (b0 is not None and b1 is not None and _key(b0) != _key(b1)),
            "capacity_per_dollar_change_pct": cpd,
            "cost_per_million_tokens_change_pct": cpm,
            "pareto_before": len(ids0), "pareto_after": len(ids1),
            "pareto_gained": [i for i in ids1 if _key(i) not in keys0],
            "pareto_lost": [i for i in ids0 if _key(i) not in keys1],
            "regression": bool(reasons), "reasons": reasons,
        }
        out["regression"] = out["regression"] or bool(reasons)
    return _jsonable(out)


def exit_code(diff: Mapping[str, Any]) -> int:
    """The nightly job's exit status: ``EXIT_OK`` (0) without regression, ``EXIT_REGRESSION``
    (3) when :func:`diff_runs` flagged one (best capacity per dollar dropped beyond the
    tolerance, or a workload lost all its plans)."""
    if not isinstance(diff, Mapping) or not isinstance(diff.get("regression"), bool):
        raise ConfigError("diff", type(diff).__name__,
                          "must be the dict diff_runs returns (with a bool 'regression')")
    return EXIT_REGRESSION if diff["regression"] else EXIT_OK


def _md(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _plan_text(p: Mapping[str, Any] | None) -> str:
    if p is None:
        return "none"
    chunk = f" chunk {p['chunk_size']}" if p.get("chunk_size") else ""
    ep = f" EP{p['expert_parallel']}" if (p.get("expert_parallel") or 1) > 1 else ""
    cpd = p.get("capacity_per_dollar")
    return (f"{p['sku']} tp{p['tp']} pp{p['pp']} x{p['replicas']} {p['scheduler']} "
            f"batch {p['batch_cap']}{chunk}{ep}"
            + (f" ({cpd:.4g} QPS per $/h)" if isinstance(cpd, float | int) else ""))


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def diff_markdown(diff: Mapping[str, Any]) -> str:
    """A readable markdown summary of :func:`diff_runs`' result."""
    verdict = "REGRESSION" if diff["regression"] else "no regression"
    lines = [f"# Nightly sweep diff: {verdict}", ""]
    if diff.get("before") or diff.get("after"):
        lines += [f"- before: `{_md(diff.get('before', ''))}`",
                  f"- after: `{_md(diff.get('after', ''))}`"]
    objectives = ", ".join(f"{k} ({v})" for k, v in diff["objectives"].items())
    lines += [f"- objectives: {_md(objectives)}",
              f"- regression when the best capacity per dollar drops by more than "
              f"{100 * diff['tolerance']:g}% or a workload loses all its plans",
              "", "| workload | plans | best changed | capacity/$ | $/M tokens | Pareto +/- | "
              "status |", "|---|---|---|---|---|---|---|"]
    for wl, d in diff["workloads"].items():
        status = "REGRESSION" if d["regression"] else "ok"
        lines.append(
            f"| {_md(wl)} | {d['plans_before']} -> {d['plans_after']} | "
            f"{'yes' if d['best_changed'] else 'no'} | "
            f"{_signed(d['capacity_per_dollar_change_pct'])} | "
            f"{_signed(d['cost_per_million_tokens_change_pct'])} | "
            f"+{len(d['pareto_gained'])} / -{len(d['pareto_lost'])} | {status} |")
    for wl, d in diff["workloads"].items():
        lines += ["", f"## {_md(wl)}", "",
                  f"- best before: {_md(_plan_text(d['best_before']))}",
                  f"- best after: {_md(_plan_text(d['best_after']))}"]
        lines += [f"- **regression**: {_md(r)}" for r in d["reasons"]]
        for label, key in (("gained", "pareto_gained"), ("lost", "pareto_lost")):
            if d[key]:
                lines.append(f"- Pareto points {label}:")
                lines += [f"  - {_md(_plan_text(p))}" for p in d[key]]
    return "\n".join(lines) + "\n"


def write_diff(out_dir: str | Path, diff: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``diff.json`` and ``diff.md`` into ``out_dir``; returns ``{"json", "markdown"}``."""
    exit_code(diff)  # validates the shape
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = diff_markdown(diff)
    return {
        "json": _write_json(dict(diff), out / "diff.json"),
        "markdown": _write_atomic(out / "diff.md",
                                  lambda tmp: tmp.write_text(text, encoding="utf-8")),
    }
