"""Bad input gets one clear error naming the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from simulator import ConfigError, SimulationConfig
from simulator.engine import Simulation


def make(**kw) -> SimulationConfig:
    return SimulationConfig.from_dict({"model": "llama-2-7b", "sku": "a100-80gb", **kw})


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"parallel": {"tensor_parallel": 3}}, ["parallel.tensor_parallel=3",
                                                "32 attention heads", "allowed: 1, 2, 4, 8"]),
        ({"parallel": {"pipeline_parallel": 5}}, ["parallel.pipeline_parallel=5",
                                                  "32 layers"]),
        ({"parallel": {"tensor_parallel": 16}}, ["parallel.tensor_parallel=16"]),
        ({"parallel": {"replicas": 0}}, ["parallel.replicas=0", ">= 1"]),
        ({"scheduler": {"name": "fifo"}}, ["scheduler.name='fifo'", "sarathi", "vllm_v1"]),
        ({"scheduler": {"watermark": 1.5}}, ["scheduler.watermark=1.5", "[0, 1)"]),
        ({"router": "closest"}, ["router='closest'", "least_outstanding"]),
        ({"model": "gpt-5"}, ["model='gpt-5'", "llama-2-7b"]),
        ({"sku": "tpu-v5"}, ["sku='tpu-v5'", "h100-sxm"]),
        ({"seed": -1}, ["seed=-1"]),
        ({"schedulr": {}}, ["schedulr", "unknown key", "scheduler"]),
        ({"scheduler": {"chunk": 5}}, ["scheduler.chunk", "chunk_size"]),
        ({"workload": {"arrival": {"rate": -2.0}}}, ["workload.arrival.rate", "-2.0"]),
    ],
)
def test_invalid_values_name_field_value_and_allowed(kw: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        make(**kw)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_model_that_does_not_fit_in_gpu_memory() -> None:
    with pytest.raises(ConfigError) as err:
        SimulationConfig.from_dict({"model": "llama-2-70b", "sku": "a100-80gb"})
    msg = str(err.value)
    assert "llama-2-70b" in msg and "does not fit" in msg and "GB weights" in msg


def test_missing_trace_file(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        make(workload={"trace_file": str(tmp_path / "nope.csv"), "lengths": {"kind": "trace"}})
    assert "workload.trace_file" in str(err.value) and "nope.csv" in str(err.value)


def test_trace_with_missing_columns(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrived_at,num_prefill_tokens\n0.0,10\n")
    with pytest.raises(ConfigError) as err:
        make(workload={"trace_file": str(path), "arrival": {"kind": "trace"},
                       "lengths": {"kind": "trace"}})
    assert "num_decode_tokens" in str(err.value) or "output" in str(err.value)


def test_errors_come_before_any_simulation(monkeypatch) -> None:
    ran = []
    monkeypatch.setattr(Simulation, "run", lambda self, *a, **k: ran.append(1))
    with pytest.raises(ConfigError):
        make(parallel={"tensor_parallel": 3})
    assert ran == []
