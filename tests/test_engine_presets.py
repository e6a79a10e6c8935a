"""Engine presets as scheduler configs: vLLM 0.6 (v0, chunked prefill only past 32K of
context), vLLM 0.8 (v1) and vLLM 0.19, their flags resolved per GPU and model as `vllm
serve` picks them, their KV-capacity knobs and their per-step CPU overheads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir

from simulator import ConfigError, SimulationConfig, simulate
from simulator.catalogue import load_catalogue
from simulator.config import SchedulerConfig, vllm_serve_defaults
from simulator.engine import build_execution_model
from simulator.execution.roofline import RooflineParams
from tests.helpers import table
from vidur_search.simulate import config_from_hydra

CONF = Path(__file__).resolve().parents[1] / "conf"


def preset(name: str, **knobs) -> dict:
    d = yaml.safe_load((CONF / "scheduler" / f"{name}.yaml").read_text())
    return {**d, **knobs}


def cfg(name: str, model: str = "llama-3-8b", sku: str = "h100-sxm", **kw) -> SimulationConfig:
    sched = preset(name, **kw.pop("scheduler", {}))
    return SimulationConfig.from_dict({"model": model, "sku": sku, "scheduler": sched, **kw})


# ------------------------------------------------------------------------------ vLLM 0.6
@pytest.mark.parametrize(
    ("model", "max_context", "chunked"),
    [
        ("llama-3-8b", 8192, "off"),
        ("mistral-7b", 32768, "off"),  # exactly 32K: not more than 32K
        ("qwen3-8b", 40960, "on"),
        ("llama-3.1-8b", 131072, "on"),
    ],
)
def test_vllm_0_6_chunks_only_past_32k_context(model: str, max_context: int,
                                               chunked: str) -> None:
    c = cfg("vllm_0_6", model=model)
    assert c.model_spec.max_context == max_context
    assert c.scheduler.name == "vllm_v0" and c.scheduler.chunked_prefill == chunked
    # max_num_batched_tokens: 512 chunks, or max(max_model_len, 2048) whole prompts
    tokens = 512 if chunked == "on" else max_context
    s = c.scheduler
    assert (s.chunk_size, s.max_tokens_per_batch, s.max_batch_size) == (tokens, tokens, 256)
    # the activation headroom follows the batch the resolved mode can build
    assert c.kv_capacity().activation_bytes == cfg(
        "vllm_0_6", model=model, scheduler={"chunked_prefill": "off",
                                            "max_tokens_per_batch": tokens}
    ).kv_capacity().activation_bytes


def test_vllm_0_6_long_context_batches_are_512_token_chunks() -> None:
    # two 3000-token prompts and one of 9000 (over v0's 8192 whole-prompt cap)
    reqs = table([0.0, 0.0, 0.01], [3000, 3000, 9000], [20, 20, 20])
    short = simulate(cfg("vllm_0_6", model="llama-3-8b", scheduler={"max_tokens_per_batch":
                                                                      8192}), requests=reqs)
    long = simulate(cfg("vllm_0_6", model="llama-3.1-8b"), requests=reqs)
    b_short, b_long = short.batches, long.batches
    assert b_short["prefill_tokens"].max() == 6000  # whole prompts, prefill-first
    assert (b_short[b_short["num_prefills"] > 0]["num_decodes"] == 0).all()
    assert "max_tokens_per_batch" in short.requests["reject_reason"].iloc[2]
    assert b_long["num_tokens"].max() == 512  # one budget for decodes and chunks
    assert (b_long["num_prefills"] > 0).sum() >= (3000 + 3000 + 9000) // 512
    mixed = b_long[(b_long["num_prefills"] > 0) & (b_long["num_decodes"] > 0)]
    assert len(mixed) > 0  # decodes ride along with prefill chunks
    done = long.requests
    assert not done["rejected"].any() and done["completed_at"].notna().all()


def test_vllm_0_6_chunked_mode_keeps_the_watermark() -> None:
    c = cfg("vllm_0_6", model="llama-3.1-8b", scheduler={"num_blocks_override": 100,
                                                         "watermark": 0.2})
    # a prompt needing 90 of 100 blocks leaves less than the 20-block watermark
    res = simulate(c, requests=table([0.0], [90 * 16], [4]))
    assert "watermark" in res.requests["reject_reason"].iloc[0]


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("phi-2", 2048),  # 2K context: 2048 at least
        ("llama-2-7b", 4096),
        ("qwen2.5-7b", 32768),  # exactly 32K: chunked prefill off, whole prompts
        ("qwen3-8b", 512),  # past 32K: chunked, 512-token budget
    ],
)
def test_vllm_0_6_token_budget_is_max_model_len_or_512(model: str, tokens: int) -> None:
    for sku in ("h100-sxm", "a100-80gb"):  # 0.6's defaults do not depend on the GPU
        s = cfg("vllm_0_6", model=model, sku=sku).scheduler
        assert (s.max_batch_size, s.chunk_size, s.max_tokens_per_batch) == (256, tokens, tokens)


def test_vllm_0_6_serves_prompts_up_to_the_context() -> None:
    # vLLM 0.6 serves a 10,000-token prompt on a 32K model (budget 32768, chunked off)
    reqs = table([0.0, 0.0], [10_000, 300], [8, 8])
    res = simulate(cfg("vllm_0_6", model="qwen2.5-7b"), requests=reqs)
    assert not res.requests["rejected"].any() and res.requests["completed_at"].notna().all()
    assert res.batches["prefill_tokens"].max() == 10_300  # whole prompts, one batch
    # an explicit cap still rejects it
    capped = simulate(cfg("vllm_0_6", model="qwen2.5-7b",
                          scheduler={"max_tokens_per_batch": 8192}), requests=reqs)
    assert "max_tokens_per_batch 8192" in capped.requests["reject_reason"].iloc[0]


# ------------------------------------------------------------- vLLM 0.8 / 0.19 per GPU
# (max_num_seqs, max_num_batched_tokens) of `vllm serve`: 0.8.0-0.8.3 by device name
# (h100/h200: 8192 tokens), 1024 sequences everywhere; 0.19 by memory (>= 70 GiB and not
# an A100: 8192 / 1024, else 2048 / 256).
SERVE_DEFAULTS = {
    "vllm_0_8": {"h100-sxm": (1024, 8192), "h200": (1024, 8192), "a100-80gb": (1024, 2048),
                 "rtx-4090": (1024, 2048), "l40s": (1024, 2048), "b200": (1024, 2048)},
    "vllm_0_19": {"h100-sxm": (1024, 8192), "h200": (1024, 8192), "a100-80gb": (256, 2048),
                  "rtx-4090": (256, 2048), "l40s": (256, 2048), "b200": (1024, 8192),
                  "rtx-pro-6000": (1024, 8192), "a100-40gb": (256, 2048)},
}


@pytest.mark.parametrize(("name", "sku", "seqs", "tokens"), [
    (name, sku, seqs, tokens)
    for name, by_sku in SERVE_DEFAULTS.items() for sku, (seqs, tokens) in by_sku.items()
])
def test_v1_presets_resolve_the_serve_defaults_per_gpu(name: str, sku: str, seqs: int,
                                                       tokens: int) -> None:
    s = cfg(name, sku=sku).scheduler
    assert s.engine_defaults == name
    assert (s.max_batch_size, s.chunk_size, s.max_tokens_per_batch) == (seqs, tokens, tokens)
    # the KV capacity is sized for the resolved batch
    assert cfg(name, sku=sku).kv_capacity() == cfg(
        name, sku=sku, scheduler={"max_batch_size": seqs, "chunk_size": tokens,
                                  "max_tokens_per_batch": tokens}).kv_capacity()


# a chunk_size set for every scheduler: those that do not chunk warn, as expected
@pytest.mark.filterwarnings("ignore::simulator.errors.ConfigWarning")
@pytest.mark.parametrize("name", ["vllm_0_6", "vllm_0_8", "vllm_0_19"])
def test_explicit_flags_win_over_the_engine_defaults(name: str) -> None:
    s = cfg(name, model="qwen2.5-7b", sku="a100-80gb",
            scheduler={"max_batch_size": 64, "chunk_size": 1024,
                       "max_tokens_per_batch": 4096}).scheduler
    assert (s.max_batch_size, s.chunk_size, s.max_tokens_per_batch) == (64, 1024, 4096)
    # one knob set: the others still follow the rule
    default = cfg(name, model="qwen2.5-7b", sku="a100-80gb").scheduler
    s = cfg(name, model="qwen2.5-7b", sku="a100-80gb",
            scheduler={"chunk_size": 1024}).scheduler
    assert s.chunk_size == 1024
    assert (s.max_batch_size, s.max_tokens_per_batch) == (default.max_batch_size,
                                                          default.max_tokens_per_batch)


def test_serve_default_rules_read_the_device_name_and_memory() -> None:
    h100 = load_catalogue(None).sku("h100-sxm")
    gh200 = dataclasses.replace(h100, name="gh200", memory_gb=96)
    small = dataclasses.replace(h100, name="h100-nvl-69", memory_gb=69)
    mi300x = dataclasses.replace(h100, name="mi300x", memory_gb=192)
    assert vllm_serve_defaults("vllm_0_8", gh200, 8192, False) == (1024, 8192)
    assert vllm_serve_defaults("vllm_0_8", mi300x, 8192, False) == (1024, 2048)
    assert vllm_serve_defaults("vllm_0_19", mi300x, 8192, False) == (1024, 8192)
    assert vllm_serve_defaults("vllm_0_19", small, 8192, False) == (256, 2048)  # < 70 GiB
    assert vllm_serve_defaults("vllm_0_6", None, 131072, False) == (256, 131072)
    assert vllm_serve_defaults("vllm_0_6", None, 1024, True) == (256, 512)


def test_engine_defaults_are_checked() -> None:
    with pytest.raises(ConfigError, match="engine's default") as err:
        SchedulerConfig(name="vllm_v1", max_batch_size=0)
    assert err.value.field == "scheduler.max_batch_size"
    with pytest.raises(ConfigError, match="allowed values are vllm_0_6") as err:
        SchedulerConfig(name="vllm_v1", engine_defaults="vllm_0_7")
    assert err.value.field == "scheduler.engine_defaults"
    with pytest.raises(ConfigError, match="must be an integer >= 1"):
        SchedulerConfig(name="vllm_v1", chunk_size=-1, engine_defaults="vllm_0_8")
    auto = SchedulerConfig(name="vllm_v1", chunk_size=0, engine_defaults="vllm_0_8")
    with pytest.raises(ConfigError, match="depend on the GPU") as err:
        auto.resolved(8192)  # 0.8's rule needs the SKU
    assert err.value.field == "scheduler.engine_defaults"
    explicit = SchedulerConfig(name="vllm_v1", engine_defaults="vllm_0_8")
    assert explicit.resolved(8192) is explicit  # nothing left to resolve


# ------------------------------------------------------------------------------ vLLM 0.8
def test_vllm_0_8_is_the_v1_scheduler_with_its_defaults() -> None:
    c = cfg("vllm_0_8")
    s = c.scheduler
    assert (s.name, s.chunk_size, s.max_batch_size, s.block_size, s.watermark) == (
        "vllm_v1", 8192, 1024, 16, 0.0)
    assert s.gpu_memory_utilization == 0.9 and s.kv_tokens_override == 0


def test_presets_set_the_per_step_cpu_overhead() -> None:
    old, new = cfg("vllm_0_6"), cfg("vllm_0_8")
    assert new.execution.roofline.cpu_overhead_base_s == 7.5e-4
    assert new.execution.roofline.cpu_overhead_per_seq_s == 3.0e-6
    assert old.execution.roofline.cpu_overhead_base_s == 2.0e-3
    for c in (old, new):
        assert c.execution.roofline.cuda_graphs_decode
        # everything the preset does not name keeps the user's (default) value
        assert c.execution.roofline.gemm_efficiency == RooflineParams().gemm_efficiency
    cpu = [build_execution_model(c).breakdown([], [], [1000] * 256)[0]["cpu_overhead"]
           for c in (old, new)]
    assert cpu[0] == pytest.approx(2.0e-3 + 256 * 1.5e-5)
    assert cpu[1] == pytest.approx(7.5e-4 + 256 * 3.0e-6)
    # v1 runs mixed batches through piecewise graphs / compiled kernels: no per-kernel
    # launch cost (v0 launches every kernel of a prefill step)
    launch = [build_execution_model(c).breakdown([512], [0], [1000] * 8)[0]["launch"]
              for c in (old, new)]
    assert launch[0] > 1e-3 and launch[1] == 0.0
    # other knobs of execution.roofline still apply next to a preset's
    tuned = cfg("vllm_0_8", execution={"roofline": {"gemm_efficiency": 0.8}})
    assert tuned.execution.roofline.gemm_efficiency == 0.8
    assert tuned.execution.roofline.cpu_overhead_base_s == 7.5e-4


def test_decode_is_faster_under_the_v1_preset() -> None:
    reqs = table(np.zeros(64), [256] * 64, [64] * 64)
    tpot = {n: float(np.median(simulate(cfg(n), requests=reqs).requests["tpot"]))
            for n in ("vllm_0_6", "vllm_0_8")}
    assert tpot["vllm_0_8"] < tpot["vllm_0_6"]


def test_conflicting_cpu_overheads_are_named() -> None:
    with pytest.raises(ConfigError, match=r"scheduler\.execution_overrides\.cpu_overhead_base_s"
                       ) as err:
        cfg("vllm_0_8", execution={"roofline": {"cpu_overhead_base_s": 1e-3}})
    assert err.value.field == "execution.roofline.cpu_overhead_base_s"
    # the same value twice is no conflict; so is the round trip of a resolved config
    c = cfg("vllm_0_8", execution={"roofline": {"cpu_overhead_base_s": 7.5e-4}})
    again = SimulationConfig.from_dict(c.to_dict())
    assert again.execution.roofline == c.execution.roofline
    assert again.scheduler == c.scheduler


def test_bad_overrides_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown key") as err:
        SchedulerConfig(name="vllm_v1", execution_overrides={"cpu_overhead": 1.0})
    assert err.value.field == "scheduler.execution_overrides.cpu_overhead"
    with pytest.raises(ConfigError, match=">= 0") as err:
        SchedulerConfig(name="vllm_v1", execution_overrides={"cpu_overhead_base_s": -1.0})
    assert err.value.field == "scheduler.execution_overrides.cpu_overhead_base_s"
    with pytest.raises(ConfigError, match="mapping"):
        SchedulerConfig(name="vllm_v1", execution_overrides=[1])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ knobs
def test_chunked_prefill_switch_is_vllm_v0s() -> None:
    for name in ("sarathi", "vllm_v1", "orca"):
        with pytest.raises(ConfigError, match="only vllm_v0") as err:
            SchedulerConfig(name=name, chunked_prefill="on")
        assert err.value.field == "scheduler.chunked_prefill"
    with pytest.raises(ConfigError, match="allowed values are auto, off, on"):
        SchedulerConfig(name="vllm_v0", chunked_prefill="yes")
    s = SchedulerConfig(name="vllm_v0", chunked_prefill="auto")
    assert s.resolved(32768).chunked_prefill == "off"
    assert s.resolved(32769).chunked_prefill == "on"
    on = SchedulerConfig(name="vllm_v0", chunked_prefill="on")
    assert on.resolved(4096) is on  # explicit settings stand


@pytest.mark.parametrize(("scheduler", "block"), [("vllm_v1", 16), ("lightllm", 1)])
def test_kv_tokens_override(scheduler: str, block: int) -> None:
    c = SimulationConfig.from_dict({"scheduler": {"name": scheduler,
                                                  "kv_tokens_override": 41408}})
    cap = c.kv_capacity()
    assert cap.block_size == block and cap.num_blocks == 41408 // block
    assert cap.num_tokens == 41408
    with pytest.raises(ConfigError, match="set at most one"):
        SchedulerConfig(kv_tokens_override=1024, num_blocks_override=64)
    with pytest.raises(ConfigError, match="at least one KV block"):
        SimulationConfig.from_dict({"scheduler": {"kv_tokens_override": 8}}).kv_capacity()
    with pytest.raises(ConfigError) as err:
        SchedulerConfig(kv_tokens_override=-1)
    assert err.value.field == "scheduler.kv_tokens_override"


def test_presets_compose_in_the_simulate_app() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        hc = compose(config_name="simulate", overrides=[
            "scheduler=vllm_0_6", "precision.kv_cache=fp8", "parallel.tensor_parallel=2"])
        c06 = config_from_hydra(hc)
        hc = compose(config_name="simulate", overrides=["scheduler=vllm_0_8"])
        c08 = config_from_hydra(hc)
        hc = compose(config_name="simulate", overrides=["scheduler=vllm_0_19",
                                                        "sku=a100-80gb"])
        c19 = config_from_hydra(hc)
        hc = compose(config_name="simulate", overrides=[
            "scheduler=vllm_0_19", "sku=a100-80gb", "scheduler.chunk_size=4096"])
        c19_set = config_from_hydra(hc)
    assert (c19.scheduler.max_batch_size, c19.scheduler.chunk_size) == (256, 2048)
    assert (c19_set.scheduler.max_batch_size, c19_set.scheduler.chunk_size) == (256, 4096)
    assert c06.scheduler.name == "vllm_v0" and c06.scheduler.chunked_prefill == "off"
    assert c06.precision.kv_cache == "fp8" and c06.precision.weights == "bf16"
    assert c06.parallel.tensor_parallel == 2
    assert c08.scheduler.name == "vllm_v1"
    assert c08.execution.roofline.cpu_overhead_base_s == 7.5e-4


@pytest.mark.parametrize("name", ["vllm_0_6", "vllm_0_8"])
def test_fast_path_matches_stepping_under_the_presets(name: str) -> None:
    rng = np.random.default_rng(3)
    n = 60
    reqs = table(np.sort(rng.uniform(0, 2.0, n)), rng.integers(100, 3000, n),
                 rng.integers(5, 300, n))
    out = []
    for ff in (True, False):
        c = cfg(name, model="llama-3.1-8b", engine={"fast_forward": ff},
                scheduler={"num_blocks_override": 600})
        out.append(simulate(c, requests=reqs))
    assert out[0].requests.equals(out[1].requests)
    assert out[0].batches.equals(out[1].batches)
    assert out[0].requests["preemptions"].sum() > 0  # the KV cache ran out on the way
