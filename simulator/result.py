"""``simulate``: run one configuration and get its records, tables and summary."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from simulator.config import SimulationConfig
from simulator.engine import ProgressFn, Simulation
from simulator.execution.base import ExecutionModel
from simulator.metrics import batch_frame, request_frame, summarize, write_outputs
from simulator.records import SimulationRecords
from simulator.workload import RequestTable


class SimulationResult:
    """What one run produced: raw records plus lazily computed tables and summary."""

    def __init__(self, records: SimulationRecords) -> None:
        self.records = records

    @cached_property
    def summary(self) -> dict:
        return summarize(self.records)

    @cached_property
    def requests(self) -> pd.DataFrame:
        return request_frame(self.records)

    @cached_property
    def batches(self) -> pd.DataFrame:
        return batch_frame(self.records)

    def write(self, out_dir: str | Path, *, chrome_trace: bool = False,
              token_table: bool = False) -> dict[str, Path]:
        """Write Parquet tables, summary.json and optionally a Perfetto trace."""
        return write_outputs(self.records, out_dir, chrome_trace=chrome_trace,
                             token_table=token_table)


def simulate(
    cfg: SimulationConfig,
    *,
    requests: RequestTable | None = None,
    execution: ExecutionModel | None = None,
    progress: ProgressFn | None = None,
) -> SimulationResult:
    """Simulate ``cfg`` (over ``requests`` if given, else its workload) to completion."""
    return SimulationResult(Simulation(cfg, requests, execution).run(progress))
