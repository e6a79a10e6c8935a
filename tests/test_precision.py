"""FP8 weights and FP8 KV cache as configuration: memory, KV blocks, GEMM and attention
costs, the SKU check, and the decode fast path's bit-exact contract under FP8."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import ConfigError, SimulationConfig, simulate
from simulator.catalogue import get_model, get_node, get_sku
from simulator.engine import build_execution_model
from simulator.execution.calibrated import CalibratedModel
from simulator.execution.roofline import RooflineModel
from simulator.memory import weight_bytes_per_gpu
from simulator.precision import BF16, Precision
from tests.helpers import table

FP8_W = Precision(weights="fp8")
FP8_KV = Precision(kv_cache="fp8")
FP8 = Precision(weights="fp8", kv_cache="fp8")


def cfg(precision: dict | None = None, **kw) -> SimulationConfig:
    d = {"model": "llama-3-8b", "sku": "h100-sxm", "precision": precision or {}, **kw}
    return SimulationConfig.from_dict(d)


def model(cls=RooflineModel, precision: Precision = BF16, name: str = "llama-3-8b",
          sku: str = "h100-sxm", node: str = "hgx-h100", tp: int = 1, pp: int = 1):
    return cls(get_model(name), get_sku(sku), get_node(node), tp, pp, precision=precision)


# ------------------------------------------------------------------------------ memory
def test_fp8_weights_halve_the_layer_weights_and_raise_kv_blocks() -> None:
    m = get_model("llama-3-8b")
    edges = 2 * m.vocab_size * m.hidden_size * 2  # embedding + LM head stay bf16
    norms = 2 * m.num_layers * m.hidden_size * 2  # two per layer (the final one is not counted)
    bf16 = weight_bytes_per_gpu(m, 1, 1)
    fp8 = weight_bytes_per_gpu(m, 1, 1, FP8_W)
    assert fp8 == pytest.approx((bf16 - edges - norms) / 2 + edges + norms, rel=1e-12)
    assert 16.0e9 < bf16 < 16.1e9 and 9.0e9 < fp8 < 9.1e9
    # TP shards the saving too
    assert weight_bytes_per_gpu(m, 4, 1, FP8_W) < weight_bytes_per_gpu(m, 4, 1) * 0.6
    base, quant = cfg().kv_capacity(), cfg({"weights": "fp8"}).kv_capacity()
    assert quant.weight_bytes == fp8 and quant.block_bytes == base.block_bytes
    freed = bf16 - fp8
    assert quant.num_blocks - base.num_blocks == pytest.approx(freed / base.block_bytes, abs=1)


def test_moe_router_stays_in_bf16() -> None:
    m = get_model("mixtral-8x7b")
    router = m.num_layers * m.hidden_size * m.num_experts * 2  # bytes at bf16
    layers = m.num_layers * (m.attention_params() + m.mlp_params())
    saved = weight_bytes_per_gpu(m, 2, 1) - weight_bytes_per_gpu(m, 2, 1, FP8_W)
    assert saved == pytest.approx((layers * 2 - router) / 2 / 2, rel=1e-12)


def test_fp8_kv_doubles_blocks_for_the_same_memory() -> None:
    base, half = cfg().kv_capacity(), cfg({"kv_cache": "fp8"}).kv_capacity()
    assert half.block_bytes * 2 == base.block_bytes
    assert half.weight_bytes == base.weight_bytes
    assert half.num_blocks in (2 * base.num_blocks, 2 * base.num_blocks + 1)
    both = cfg({"weights": "fp8", "kv_cache": "fp8"}).kv_capacity()
    assert both.num_blocks > half.num_blocks


def test_fp8_weights_let_a_70b_model_fit_one_h200() -> None:
    with pytest.raises(ConfigError, match="does not fit on h200"):
        cfg(model="llama-3.1-70b", sku="h200")
    fits = cfg({"weights": "fp8"}, model="llama-3.1-70b", sku="h200").kv_capacity()
    assert fits.num_blocks > 1000


# ------------------------------------------------------------------------------ costs
@pytest.mark.parametrize("cls", [RooflineModel, CalibratedModel])
def test_fp8_gemms_run_at_the_fp8_rate_on_h100(cls) -> None:
    bf16, fp8 = model(cls), model(cls, FP8_W)
    chunk = ([8192], [0], [])  # compute-bound GEMMs
    b, f = bf16.breakdown(*chunk)[0], fp8.breakdown(*chunk)[0]
    peak_ratio = get_sku("h100-sxm").bf16_tflops / get_sku("h100-sxm").fp8_tflops
    for part in ("qkv_proj", "o_proj", "mlp"):
        ratio = f[part] / b[part]
        if cls is RooflineModel and part != "mlp":  # pure compute: exactly the peak ratio
            assert ratio == pytest.approx(peak_ratio, rel=1e-9)
        else:  # the activation function (mlp) and the curve's unhidden memory time remain
            assert peak_ratio <= ratio < 0.6
    for part in ("lm_head", "attention_prefill", "embedding", "cpu_overhead"):
        assert f[part] == b[part]  # not quantised
    assert sum(fp8.stage_times(*chunk)) < 0.7 * sum(bf16.stage_times(*chunk))


@pytest.mark.parametrize("cls", [RooflineModel, CalibratedModel])
def test_fp8_weights_halve_decode_weight_reads(cls) -> None:
    bf16, fp8 = model(cls), model(cls, FP8_W)
    b, f = bf16.breakdown([], [], [512] * 8)[0], fp8.breakdown([], [], [512] * 8)[0]
    assert 0.45 < f["mlp"] / b["mlp"] < 0.6  # memory bound: weight bytes halve
    assert f["attention_decode"] == b["attention_decode"]


@pytest.mark.parametrize("cls", [RooflineModel, CalibratedModel])
def test_fp8_kv_cache_halves_decode_kv_reads(cls) -> None:
    bf16, fp8 = model(cls), model(cls, FP8_KV)
    kv = [16384] * 64
    b, f = bf16.breakdown([], [], kv)[0], fp8.breakdown([], [], kv)[0]
    assert 0.48 < f["attention_decode"] / b["attention_decode"] < 0.56
    assert f["mlp"] == b["mlp"] and f["qkv_proj"] == b["qkv_proj"]


def test_fp8_weights_need_fp8_tensor_cores() -> None:
    with pytest.raises(ConfigError, match="a100-80gb has no FP8 tensor cores") as err:
        cfg({"weights": "fp8"}, sku="a100-80gb")
    assert err.value.field == "precision.weights"
    with pytest.raises(ConfigError, match="a10g"):
        model(precision=FP8_W, sku="a10g", node="a10g-pcie")
    # an FP8 KV cache needs no FP8 math
    assert cfg({"kv_cache": "fp8"}, sku="a100-80gb").kv_capacity().num_blocks > 0


def test_precision_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="allowed values are bf16, fp8") as err:
        cfg({"weights": "int4"})
    assert err.value.field == "precision.weights"
    with pytest.raises(ConfigError) as err:
        cfg({"kv_cache": "fp16"})
    assert err.value.field == "precision.kv_cache"
    with pytest.raises(ConfigError, match="unknown key") as err:
        cfg({"activations": "fp8"})
    assert err.value.field == "precision.activations"


def test_precision_round_trips_and_reaches_the_execution_model() -> None:
    c = cfg({"weights": "fp8", "kv_cache": "fp8"}, execution={"kind": "calibrated"})
    again = SimulationConfig.from_dict(c.to_dict())
    assert again.precision == FP8 and c.to_dict()["precision"] == {
        "weights": "fp8", "kv_cache": "fp8"}
    ex = build_execution_model(c)
    assert isinstance(ex, CalibratedModel) and ex.precision == FP8


# ------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("cls", [RooflineModel, CalibratedModel])
@pytest.mark.parametrize(("name", "tp", "pp"), [("llama-3-8b", 1, 1), ("llama-2-70b", 4, 2),
                                                ("mixtral-8x7b", 2, 1)])
def test_decode_steps_stay_bit_exact_under_fp8(cls, name: str, tp: int, pp: int) -> None:
    ex = model(cls, FP8, name=name, tp=tp, pp=pp)
    rng = np.random.default_rng(tp * 10 + pp)
    kv = rng.integers(1, 20000, size=37, dtype=np.int64)
    steps = ex.decode_steps(kv, 12)
    for j in range(12):
        assert tuple(steps[j]) == ex.stage_times([], [], (kv + j).tolist())


def test_fp8_end_to_end_decodes_faster_and_holds_more() -> None:
    reqs = table(np.linspace(0.0, 0.5, 40), [600] * 40, [200] * 40)
    runs = {}
    for p in ({}, {"weights": "fp8", "kv_cache": "fp8"}):
        c = cfg(p, scheduler={"name": "vllm_v1", "max_batch_size": 64, "chunk_size": 2048})
        runs[bool(p)] = simulate(c, requests=reqs)
    tpot = {k: float(np.nanmedian(r.requests["tpot"])) for k, r in runs.items()}
    assert tpot[True] < 0.8 * tpot[False]
    assert (runs[True].requests["completed_at"].notna()).all()
