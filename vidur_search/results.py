"""The trials table on disk: one Parquet file, rewritten atomically after every trial.

A sweep killed at any moment leaves either the previous or the new complete file (write
to a temporary file, then ``os.replace``), so a restart finds every trial that finished.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from simulator import ConfigError

#: Columns of the trials table, in order (see docs/search.md for their meaning).
COLUMNS: tuple[str, ...] = (
    "trial_id", "status", "error", "model", "sku", "node", "tp", "pp", "replicas",
    "scheduler", "batch_cap", "chunk_size", "expert_parallel", "workload", "num_gpus",
    "price_per_gpu_hour",
    "cost_per_hour", "capacity_qps", "capacity_reason", "capacity_per_dollar",
    "cost_per_million_tokens", "tokens_per_s", "ttft_p50", "ttft_p90", "ttft_p99",
    "tbt_p50", "tbt_p99", "tpot_p50", "tpot_p90", "e2e_p50", "e2e_p90", "sched_delay_p99",
    "simulations", "execution", "wall_s", "finished_at", "node_ip", "node_id", "key",
)
_INT = ("tp", "pp", "replicas", "batch_cap", "chunk_size", "expert_parallel", "num_gpus",
        "simulations")
_STR = ("trial_id", "status", "error", "model", "sku", "node", "scheduler", "workload",
        "capacity_reason", "execution", "finished_at", "node_ip", "node_id", "key")


def normalise(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) as a trials DataFrame with every column, in order, with fixed dtypes."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in COLUMNS:
        if col in _INT:  # a table written before EP was searched has EP 1
            fill = 1 if col == "expert_parallel" else 0
            df[col] = pd.to_numeric(df[col]).fillna(fill).astype("int64")
        elif col in _STR:
            df[col] = df[col].fillna("").astype(str)
        else:
            df[col] = pd.to_numeric(df[col]).astype("float64")
    return df


class TrialsTable:
    """``trials.parquet`` of one sweep: load what is there, append rows as trials finish."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                df = pd.read_parquet(self.path)
            except Exception as err:
                raise ConfigError("output.dir", str(self.path.parent),
                                  f"holds an unreadable trials.parquet ({err}); move it away "
                                  "or pick another output.dir") from err
            missing = [c for c in COLUMNS if c not in df.columns]
            if missing:
                raise ConfigError("output.dir", str(self.path.parent),
                                  f"its trials.parquet lacks columns {missing}: it was not "
                                  "written by this version; pick another output.dir")
            self.rows = df[list(COLUMNS)].to_dict("records")

    def __len__(self) -> int:
        return len(self.rows)

    def done(self, workload: str) -> dict[str, dict[str, Any]]:
        """Finished rows of ``workload`` by candidate key (what a restart must not re-run)."""
        return {r["key"]: r for r in self.rows if r["workload"] == workload}

    def append(self, row: dict[str, Any]) -> None:
        """Add one finished trial and rewrite the file atomically."""
        self.rows.append(row)
        self.write()

    def frame(self) -> pd.DataFrame:
        return normalise(self.rows)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".parquet.tmp")
        self.frame().to_parquet(tmp, index=False, compression="zstd")
        os.replace(tmp, self.path)


def objective(row: dict[str, Any], key: str) -> float:
    """A row's value for an Optuna objective: latencies of zero-capacity or failed trials
    are unknown (NaN), reported as a very bad 1e9 seconds so multi-objective samplers
    push away from them."""
    value = float(row.get(key, math.nan))
    return 1e9 if math.isnan(value) or math.isinf(value) else value
