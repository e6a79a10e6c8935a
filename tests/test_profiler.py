"""The profiler on the CPU: the tiny-model path end to end (shapes, schema, grids,
statistics, metadata), config errors, attention semantics, and the batch validation
script's CPU path."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from profiler.grids import GridConfig, log_grid
from profiler.layer import DENSE_OPS, MOE_OPS, AttentionBackend, DecoderLayer, LayerShape, tiny_spec
from profiler.run import ProfilerConfig, parse_args, run
from profiler.timing import Timer, stats
from simulator.catalogue import get_model
from simulator.errors import ConfigError
from simulator.profiles import ProfileStore, model_shape_of, read_profile

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> tuple[list[Path], str]:
    lines: list[str] = []
    cfg = parse_args([*args, f"out={tmp_path}", "progress=false"])
    return run(cfg, echo=lines.append), "\n".join(lines)


def test_tiny_dense_run_writes_valid_profiles_per_tp(tmp_path: Path) -> None:
    files, log = _run(tmp_path, "model=llama-3-8b", "tp=1,8")
    assert "Estimated run time:" in log and "collectives skipped" in log
    assert log.index("Estimated run time:") < log.index("Done in")  # printed before measuring
    spec = tiny_spec(get_model("llama-3-8b"))
    store = ProfileStore(tmp_path)
    assert len(files) == 6 and all(f.is_file() for f in files)
    for tp in (1, 8):
        assert set(store.coverage("tiny-llama-3-8b", "cpu", tp)) == {
            "attention_prefill", "attention_decode", "layer_ops"}
        q, kv, hd = 32 // tp, max(1, 8 // tp), 8
        for fam in ("attention_prefill", "attention_decode", "layer_ops"):
            df, meta = store.load("cpu", "tiny-llama-3-8b", tp, fam)
            assert (meta.device, meta.source, meta.tp, meta.dtype) == ("cpu", "measured", tp,
                                                                       "bf16")
            assert meta.model_shape == model_shape_of(spec) and "tiny" in meta.origin
            assert meta.torch == torch.__version__ and meta.date and meta.cuda == ""
            assert (df["min_us"] <= df["median_us"]).all()
            assert (df["median_us"] <= df["max_us"]).all()
            assert (df["min_us"] <= df["mean_us"]).all() and (df["mean_us"] <= df["max_us"]).all()
            assert (df["count"] == 3).all() and (df["min_us"] > 0).all()
            if fam != "layer_ops":
                assert set(df["n_q_heads"]) == {q} and set(df["n_kv_heads"]) == {kv}
                assert set(df["head_dim"]) == {hd}
        pre, _ = store.load("cpu", "tiny-llama-3-8b", tp, "attention_prefill")
        assert (pre["chunk_tokens"] + pre["prior_kv"] <= 256).all()
        assert {1, 256} <= set(pre["chunk_tokens"]) and 0 in set(pre["prior_kv"])
        dec, _ = store.load("cpu", "tiny-llama-3-8b", tp, "attention_decode")
        assert set(dec["batch_size"]) == {1, 2, 4, 8, 16} and set(dec["kv_len"]) == {
            16, 32, 64, 128, 256}
        ops, _ = store.load("cpu", "tiny-llama-3-8b", tp, "layer_ops")
        assert tuple(dict.fromkeys(ops["op"])) == DENSE_OPS
        dims = {op: (int(g["n"].iloc[0]), int(g["k"].iloc[0])) for op, g in ops.groupby("op")}
        assert dims["qkv_proj"] == ((q + 2 * kv) * hd, 256)
        assert dims["o_proj"] == (256, q * hd)
        assert dims["gate_up_proj"] == (2 * spec.ffn_size // tp, 256)
        assert dims["down_proj"] == (256, spec.ffn_size // tp)
        assert dims["lm_head"] == (512 // tp, 256)
        assert set(ops.loc[ops["op"] == "lm_head", "num_tokens"]) == {1, 2, 4, 8, 16}
    # The files are ordinary store files: a reader validates them from disk alone.
    df, meta = read_profile(files[0])
    assert len(df) and meta.model == "tiny-llama-3-8b"


def test_tiny_moe_run_with_gloo_collectives(tmp_path: Path) -> None:
    _, log = _run(tmp_path, "model=mixtral-8x7b", "tp=2", "tokens_max=32", "kv_max=64",
                  "families=layer_ops,collective", "collectives=on", "collective_max=4096")
    assert "collectives over 2 gloo processes" in log
    store = ProfileStore(tmp_path)
    ops, _ = store.load("cpu", "tiny-mixtral-8x7b", 2, "layer_ops")
    assert tuple(dict.fromkeys(ops["op"])) == MOE_OPS
    moe = ops[ops["op"] == "moe_experts"]
    assert set(moe["experts"]) == {8} and set(moe["topk"]) == {2}
    assert set(moe["n"]) == {tiny_spec(get_model("mixtral-8x7b")).ffn_size // 2}
    assert (ops.loc[ops["op"] != "moe_experts", "experts"] == 0).all()
    assert store.coverage("tiny-mixtral-8x7b", "cpu", 2) == {
        "layer_ops": store.path_for(_meta_of(store, "layer_ops"))}
    coll, meta = store.load("cpu", "", 1, "collective", node="cpu")
    assert meta.node == "cpu" and meta.model == ""
    assert set(coll["op"]) == {"all_reduce", "all_gather", "send_recv"}
    assert set(coll["num_gpus"]) == {2} and set(coll["size_bytes"]) == {1024, 2048, 4096}
    assert (coll["min_us"] <= coll["median_us"]).all()


def _meta_of(store: ProfileStore, family: str):
    return read_profile(store.coverage("tiny-mixtral-8x7b", "cpu", 2)[family])[1]


@pytest.mark.parametrize(("args", "field"), [
    (["model=llama-9"], "model"),
    (["model=qwen2.5-7b", "tp=8"], "tp"),
    (["model=llama-3-8b", "tp=3"], "tp"),
    (["model=llama-3-8b", "tp=two"], "tp"),
    (["model=llama-3-8b", "tokens_max=-4"], "tokens_max"),
    (["model=llama-3-8b", "repeats=x"], "repeats"),
    (["model=llama-3-8b", "warmup=-2"], "warmup"),
    (["model=llama-3-8b", "kv_min=64", "kv_max=32"], "kv_min"),
    (["model=llama-3-8b", "points_per_octave=100"], "points_per_octave"),
    (["model=llama-3-8b", "prefill_batch=1,0"], "prefill_batch"),
    (["model=llama-3-8b", "families=layer_ops,gemms"], "families"),
    (["model=llama-3-8b", "attention=xformers"], "attention"),
    (["model=llama-3-8b", "timing=fast"], "timing"),
    (["model=llama-3-8b", "device=tpu"], "device"),
    (["model=llama-3-8b", "colour=blue"], "colour"),
    (["model=llama-3-8b", "plan_for=h100-sxm"], "plan_for"),
    (["tp=1"], "model"),
])
def test_config_errors_name_the_field(args: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_args(args)
    assert err.value.field == field
    if field == "model" and args[0].startswith("model"):
        assert "llama-3-8b" in str(err.value)  # lists the allowed names


def test_dry_run_plans_gpu_grids_without_measuring(tmp_path: Path) -> None:
    files, log = _run(tmp_path, "model=llama-3-8b", "tp=1,2", "dry_run=true",
                      "plan_for=h100-sxm")
    assert files == [] and not any(tmp_path.iterdir())
    assert "Estimated run time:" in log and "collectives skipped: 1 GPU" in log
    assert "tokens 1..8192" in log and "batch 1..512" in log and "kv 16..8192" in log
    est = next(ln for ln in log.splitlines() if ln.startswith("Estimated run time:"))
    m = re.fullmatch(r"Estimated run time: (?:(\d+)m )?(\d+(?:\.\d)?)s", est)
    assert m and 10 < int(m.group(1) or 0) * 60 + float(m.group(2)) < 600


def test_log_grid() -> None:
    g = log_grid(1, 8192, 4)
    assert g[0] == 1 and g[-1] == 8192 and g == sorted(set(g))
    assert 45 <= len(g) <= 53  # about 4 per doubling over 13 doublings
    assert log_grid(16, 16, 4) == [16] and log_grid(1, 16, 1) == [1, 2, 4, 8, 16]
    ratios = np.diff(np.log2(g[8:]))
    assert ratios.max() < 0.3  # no holes once integers are dense enough


def test_grid_resolve_defaults_and_caps() -> None:
    grid = GridConfig().resolve(context=4096, tiny=False, kv_tokens_cap=10_000)
    assert grid.tokens[-1] == 4096 and grid.batches[-1] == 512 and grid.kvs[-1] == 4096
    assert (grid.warmup, grid.repeats) == (5, 20)
    kept, left = grid.decode_points()
    assert left > 0 and all(b * kv <= 10_000 for b, kv in kept)
    assert all(c + p <= 4096 for _, c, p in grid.prefill_points())
    tiny = GridConfig(warmup=0).resolve(context=256, tiny=True, kv_tokens_cap=1 << 20)
    assert tiny.warmup == 0 and tiny.repeats == 3


def test_stats_and_timer() -> None:
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert s["min_us"] == 1.0 and s["median_us"] == 2.5 and s["max_us"] == 10.0
    assert s["count"] == 4 and math.isclose(s["mean_us"], 4.0)
    with pytest.raises(ValueError):
        stats([])
    calls = []
    samples = Timer(torch.device("cpu"), warmup=2, repeats=5).samples(lambda: calls.append(1))
    assert len(calls) == 7 and len(samples) == 5 and min(samples) >= 0
    with pytest.raises(ConfigError) as err:
        Timer(torch.device("cpu"), warmup=1, repeats=0)
    assert err.value.field == "repeats"
    with pytest.raises(ConfigError) as err:
        Timer(torch.device("cpu"), cuda_mode="sometimes")
    assert err.value.field == "timing"


def test_tp_sharding_of_shapes() -> None:
    s = LayerShape.from_spec(get_model("llama-2-70b"), 8)
    assert (s.q_heads, s.kv_heads, s.head_dim, s.ffn, s.vocab) == (8, 1, 128, 3584, 4000)
    assert s.op_dims("qkv_proj") == (10 * 128, 8192) and s.op_dims("down_proj") == (8192, 3584)
    phi = LayerShape.from_spec(get_model("phi-2"), 2)
    assert not phi.gated and phi.up_width == phi.ffn and phi.norm == "layernorm"
    with pytest.raises(ConfigError) as err:
        LayerShape.from_spec(get_model("qwen2.5-7b"), 8)
    assert err.value.field == "tp" and "28 attention heads" in str(err.value)


def _reference_attention(q, k, v, lens=None):
    """Float32 attention with bottom-right causal alignment and GQA by repetition."""
    q, k, v = (t.float() for t in (q, k, v))
    b, c, hq, _ = q.shape
    s, hkv = k.shape[1], k.shape[2]
    k = k.repeat_interleave(hq // hkv, dim=2)
    v = v.repeat_interleave(hq // hkv, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    allowed = torch.arange(s)[None, :] <= (s - c + torch.arange(c))[:, None]
    mask = allowed[None, None].expand(b, 1, c, s).clone()
    if lens is not None:
        mask &= (torch.arange(s)[None, :] < lens[:, None])[:, None, None, :]
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)


@pytest.mark.parametrize(("chunk", "prior"), [(5, 0), (4, 7), (1, 9)])
@pytest.mark.parametrize("native", [True, False])
def test_sdpa_prefill_is_bottom_right_causal_gqa(chunk: int, prior: int, native: bool) -> None:
    attn = AttentionBackend(torch.device("cpu"), "sdpa")
    assert attn.gqa_native  # the probe passes on the CPU
    attn.gqa_native = native  # as when the probe fails: K/V heads are repeated
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, chunk, 8, 16, generator=g)
    k = torch.randn(2, prior + chunk, 2, 16, generator=g)
    v = torch.randn(2, prior + chunk, 2, 16, generator=g)
    out = attn.prefill(q, k, v)
    assert out.shape == q.shape
    torch.testing.assert_close(out, _reference_attention(q, k, v), atol=1e-5, rtol=1e-4)


def test_sdpa_decode_masks_padding_and_groups_heads() -> None:
    attn = AttentionBackend(torch.device("cpu"), "sdpa")
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 1, 8, 16, generator=g)
    k = torch.randn(3, 12, 2, 16, generator=g)
    v = torch.randn(3, 12, 2, 16, generator=g)
    lens = torch.tensor([12, 5, 1])
    ref = torch.cat([_reference_attention(q[i:i + 1], k[i:i + 1, :n], v[i:i + 1, :n])
                     for i, n in enumerate(lens.tolist())])
    torch.testing.assert_close(attn.decode(q, k, v, lens), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attn.decode(q, k, v), _reference_attention(q, k, v),
                               atol=1e-5, rtol=1e-4)


def test_paged_decode_inputs_with_flash_attn(monkeypatch: pytest.MonkeyPatch) -> None:
    """With flash_attn present, decodes read a paged cache through a block table."""
    seen = {}

    def with_kvcache(q, k_cache, v_cache, cache_seqlens=None, block_table=None, causal=False):
        seen.update(q=q.shape, k=k_cache.shape, lens=cache_seqlens, table=block_table)
        return torch.zeros_like(q)

    fake = types.SimpleNamespace(flash_attn_with_kvcache=with_kvcache,
                                 flash_attn_func=lambda q, k, v, causal: torch.zeros_like(q))
    monkeypatch.setattr("profiler.layer._import_flash_attn", lambda: fake)
    backend = AttentionBackend(torch.device("cuda"), "auto")  # no CUDA call is made
    assert backend.kind == "flash_attn" and backend.paged
    layer = DecoderLayer(LayerShape.from_spec(tiny_spec(get_model("llama-3-8b")), 2),
                         attention="sdpa", with_edges=False)
    layer.attn = backend
    layer.decode_fn(batch=3, kv_len=300)()
    pages = math.ceil(300 / backend.PAGE)
    assert seen["q"] == (3, 1, 16, 8) and seen["k"] == (3 * pages, backend.PAGE, 4, 8)
    assert seen["table"].shape == (3, pages) and seen["table"].dtype == torch.int32
    assert sorted(seen["table"].flatten().tolist()) == list(range(3 * pages))
    assert seen["lens"].tolist() == [300, 300, 300]


def test_config_dataclass_validates_directly() -> None:
    cfg = ProfilerConfig(model="llama-3-70b", tp=(2, 4, 8))
    assert cfg.spec.num_heads == 64
    with pytest.raises(ConfigError) as err:
        ProfilerConfig(model="llama-3-70b", tp=(3,))
    assert err.value.field == "tp"


def test_validate_batches_cpu_path(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "validate_batches", ROOT / "experiments" / "validate_batches.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["validate_batches"] = mod
    spec.loader.exec_module(mod)
    path = mod.main(["--device", "cpu", "--tiny", "--max-batches", "3", "--requests", "6",
                     "--out", str(tmp_path)])
    import pandas as pd

    df = pd.read_parquet(path)
    assert set(df["scheduler"]) == {"sarathi", "vllm_v0"}
    assert {"prefill_chunks", "decode_kv", "predicted_gpu_s", "measured_s",
            "error_pct"} <= set(df.columns)
    assert (df["measured_s"] > 0).all() and (df["predicted_gpu_s"] < df["predicted_s"]).all()
    assert (df["num_tokens"] == df["prefill_tokens"] + df["num_decodes"]).all()
    report = (tmp_path / "validate_batches.md").read_text()
    assert "## Summary" in report and "Tiny CPU run" in report


def test_moe_with_precomputed_routing_matches_the_syncing_path() -> None:
    layer = DecoderLayer(LayerShape.from_spec(tiny_spec(get_model("mixtral-8x7b")), 2),
                         dtype=torch.float32, with_edges=False)
    x = torch.randn(37, layer.shape.hidden, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(layer.moe(x, layer.routing(x)), layer.moe(x))
    dense = LayerShape.from_spec(tiny_spec(get_model("llama-3-8b")), 1)
    assert not dense.is_moe and "moe_experts" not in dense.ops
