"""vLLM 0.19: its preset (async scheduling hides the per-step CPU work) and the
``vllm_v1_async`` scheduler (one step of lag in admission, the full-prompt gate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator import SimulationConfig, simulate
from simulator.config import SchedulerConfig
from simulator.engine import build_execution_model
from simulator.scheduling import REGISTRY
from simulator.scheduling.batch import Batch
from simulator.scheduling.state import RequestState
from simulator.scheduling.vllm_v1 import VllmV1AsyncScheduler, VllmV1Scheduler
from tests.helpers import table

PRESET = Path(__file__).resolve().parents[1] / "conf" / "scheduler" / "vllm_0_19.yaml"


def preset(**knobs) -> dict:
    return {**yaml.safe_load(PRESET.read_text()), **knobs}


def test_vllm_0_19_preset_has_the_serve_defaults_and_no_exposed_cpu_work() -> None:
    c = SimulationConfig.from_dict({"model": "llama-3.1-8b", "sku": "h100-sxm",
                                    "scheduler": preset()})
    s = c.scheduler
    assert s.name in ("vllm_v1", "vllm_v1_async")
    assert (s.chunk_size, s.max_tokens_per_batch, s.max_batch_size, s.block_size) == (
        8192, 8192, 1024, 16)
    r = c.execution.roofline
    assert (r.cpu_overhead_base_s, r.cpu_overhead_per_seq_s, r.kernels_per_layer) == (0, 0, 0)
    assert r.cuda_graphs_decode
    parts = build_execution_model(c).breakdown([1000], [0], [500] * 64)[0]
    assert parts["cpu_overhead"] == 0 and parts["launch"] == 0


# ------------------------------------------------------------------ vllm_v1_async, by hand


def scheduler(cls: type, reqs, num_blocks: int = 1000, **knobs) -> VllmV1Scheduler:
    cfg = SchedulerConfig(**{"name": "vllm_v1", "max_batch_size": 8, "chunk_size": 512,
                             "max_tokens_per_batch": 512, "watermark": 0.0, **knobs})
    return cls(0, cfg, RequestState(reqs), num_blocks, 100_000)


def step(s: VllmV1Scheduler, now: float, dt: float = 0.01) -> tuple[Batch | None, float]:
    """Schedule at ``now`` and run the batch for ``dt``, as the engine does."""
    b = s.schedule(now)
    if b is None:
        return None, now
    b.start, b.end = now, now + dt
    s.on_batch_end(b, now + dt)
    return b, now + dt


def test_a_request_arriving_during_a_step_waits_one_step_more() -> None:
    # request 0 decodes; request 1 arrives while step 1 runs
    reqs = table([0.0, 0.015], [100, 100], [50, 5])
    first = {}
    for cls in (VllmV1Scheduler, VllmV1AsyncScheduler):
        s = scheduler(cls, reqs)
        s.add_request(0)
        _, now = step(s, 0.0)  # prefill of request 0: [0, 0.01]
        _, now = step(s, now)  # a decode: [0.01, 0.02]; request 1 arrives at 0.015
        s.add_request(1)
        steps = 0
        while 1 not in (b := step(s, now))[0].prefill_ids:
            now = b[1]
            steps += 1
        first[cls.name] = steps
    # v1 admits it at the end of the step it arrived in; async planned that step at its
    # start, so request 1 rides along one step later
    assert first == {"vllm_v1": 0, "vllm_v1_async": 1}


def test_an_idle_async_engine_schedules_an_arrival_at_once() -> None:
    s = scheduler(VllmV1AsyncScheduler, table([0.0, 0.5], [100, 100], [2, 2]))
    s.add_request(0)
    _, now = step(s, 0.0)
    _, now = step(s, now)  # request 0 done: the engine idles
    assert not s.running
    s.add_request(1)
    b, _ = step(s, 0.5)
    assert b is not None and b.prefill_ids == [1]


def admitted_at(cls: type, reqs, rid: int, **knobs) -> int:
    """The step in which request ``rid`` is first scheduled (all requests queued at 0)."""
    s = scheduler(cls, reqs, **knobs)
    for r in range(len(reqs)):
        s.add_request(r)
    now, i = 0.0, 0
    while True:
        b, now = step(s, now)
        if rid in b.prefill_ids:
            return i
        i += 1


def test_slots_freed_by_a_step_are_reused_one_step_later() -> None:
    # max_num_seqs 2: request 2 waits for request 0's slot while request 1 keeps decoding.
    # Request 0 emits its 3 tokens in steps 0-2; v1 reuses its slot in step 3, the async
    # engine had planned step 3 before request 0 finished, so in step 4.
    reqs = table([0.0] * 3, [16] * 3, [3, 40, 3])
    v1 = admitted_at(VllmV1Scheduler, reqs, 2, max_batch_size=2)
    assert v1 == 3
    assert admitted_at(VllmV1AsyncScheduler, reqs, 2, max_batch_size=2) == v1 + 1


def test_an_otherwise_empty_step_is_not_lagged() -> None:
    # max_num_seqs 1: nothing else runs when request 0 finishes, and an empty step is no
    # step (vLLM schedules again at once), so request 1 starts in step 3 either way
    reqs = table([0.0] * 2, [16] * 2, [3, 3])
    for cls in (VllmV1Scheduler, VllmV1AsyncScheduler):
        assert admitted_at(cls, reqs, 1, max_batch_size=1) == 3


def test_the_full_prompt_must_fit_to_be_admitted() -> None:
    # 40 blocks of 16 tokens; request 0 takes 25. Request 1's first chunk (the 112 tokens
    # left of the 512 budget, 7 blocks) fits in the 15 free blocks, its 300-token prompt
    # (19 blocks) does not
    reqs = table([0.0, 0.0], [400, 300], [100, 4])
    got = {}
    for cls in (VllmV1Scheduler, VllmV1AsyncScheduler):
        s = scheduler(cls, reqs, num_blocks=40)
        s.add_request(0)
        s.add_request(1)
        b, _ = step(s, 0.0)
        got[cls.name] = list(zip(b.prefill_ids, b.prefill_chunks, strict=True))
    assert got["vllm_v1"] == [(0, 400), (1, 112)]  # admitted on its first chunk
    assert got["vllm_v1_async"] == [(0, 400)]  # waits until its whole prompt fits


# ------------------------------------------------------------------ vllm_v1_async, engine


@pytest.fixture
def async_as_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the engine with ``vllm_v1_async`` under the name ``vllm_v1``."""
    monkeypatch.setitem(REGISTRY, "vllm_v1", VllmV1AsyncScheduler)


def test_async_fast_path_matches_stepping(async_as_v1: None) -> None:
    rng = np.random.default_rng(5)
    n = 80
    reqs = table(np.sort(rng.uniform(0, 2.0, n)), rng.integers(100, 3000, n),
                 rng.integers(5, 300, n))
    out = []
    for ff in (True, False):
        c = SimulationConfig.from_dict({
            "model": "llama-3.1-8b", "sku": "h100-sxm", "engine": {"fast_forward": ff},
            "scheduler": preset(name="vllm_v1", max_batch_size=64, num_blocks_override=600)})
        out.append(simulate(c, requests=reqs))
    assert out[0].requests.equals(out[1].requests)
    assert out[0].batches.equals(out[1].batches)
    r = out[0].requests
    assert r["completed_at"].notna().all() and r["preemptions"].sum() > 0
