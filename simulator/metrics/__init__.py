"""Summaries and output files of one simulation, computed from its :class:`SimulationRecords`."""

from simulator.metrics.outputs import chrome_trace_events, write_chrome_trace, write_outputs
from simulator.metrics.summary import (
    LATENCY_METRICS,
    batch_frame,
    format_summary,
    replica_frame,
    request_frame,
    summarize,
    tbt_values,
    token_frame,
)

__all__ = [
    "LATENCY_METRICS",
    "batch_frame",
    "chrome_trace_events",
    "format_summary",
    "replica_frame",
    "request_frame",
    "summarize",
    "tbt_values",
    "token_frame",
    "write_chrome_trace",
    "write_outputs",
]
