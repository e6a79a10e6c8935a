"""Raw records one simulation produces: the hand-off from the engine to metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SimulationRecords:
    """Everything measured in one run, as numpy arrays (no per-token Python objects).

    Request arrays are indexed by request id (0..n-1, in arrival order). Times are seconds
    from the start of the simulation; NaN where an event never happened (e.g. a rejected
    request has no first token).
    """

    # --- per request ---
    arrival: np.ndarray  # float64
    num_prefill: np.ndarray  # int64, prompt tokens
    num_decode: np.ndarray  # int64, output tokens (the first comes from the prefill)
    replica: np.ndarray  # int64, -1 when rejected before routing
    scheduled_at: np.ndarray  # float64, first time any part of it entered a batch
    first_token_at: np.ndarray  # float64
    completed_at: np.ndarray  # float64
    preemptions: np.ndarray  # int64, times it was preempted (and restarted)
    reject_reason: np.ndarray  # object (str), "" when served
    # --- every emitted token, in emission order ---
    token_request: np.ndarray  # int64 request id
    token_time: np.ndarray  # float64 emission time
    # --- per batch (one row per iteration of a replica) ---
    batch_replica: np.ndarray  # int64
    batch_start: np.ndarray  # float64, stage 0 start
    batch_end: np.ndarray  # float64, last stage end
    batch_num_prefills: np.ndarray  # int64, prefill chunks in the batch
    batch_prefill_tokens: np.ndarray  # int64
    batch_num_decodes: np.ndarray  # int64
    batch_kv_blocks_used: np.ndarray  # int64, blocks allocated on the replica in this batch
    batch_stage_start: np.ndarray  # float64 (batches, stages)
    batch_stage_end: np.ndarray  # float64 (batches, stages)
    # --- per replica ---
    replica_kv_blocks: np.ndarray  # int64, KV block capacity of each replica
    # --- run description ---
    num_stages: int
    gpus_per_replica: int
    peak_flops_per_gpu: float  # FLOP/s, for MFU
    active_params: int  # parameters touched per token (MoE: top-k experts), for MFU
    block_size: int
    sim_end: float  # simulated time of the last event
    wall_s: float = 0.0  # wall-clock seconds the event loop took
    events: int = 0  # events the loop processed
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, for the record
    warmup_requests: int = 0  # the first N request ids are left out of the summary
    # where the batch runtimes came from (ExecutionModel.provenance, plus "requested")
    execution: dict[str, Any] = field(default_factory=dict)
