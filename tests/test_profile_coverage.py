"""Store coverage: which file covers each family for (model, SKU, TP), including shape-keyed
attention tables and the node's collectives, and the ``python -m simulator.profiles
coverage`` command line. Stores are built in tmp with the writers (no reference data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler.import_aiconfigurator import (
    attention_decode_rows,
    attention_prefill_rows,
    collective_rows,
    layer_ops_rows,
)
from simulator.catalogue import get_model
from simulator.errors import ConfigError
from simulator.profiles import ProfileMeta, ProfileStore, model_shape_of
from simulator.profiles.__main__ import main
from simulator.profiles.store import COVER_FAMILIES, cover, format_coverage

REPO = Path(__file__).resolve().parents[1]
# per-GPU (q heads, kv heads, head_dim) in the tables: llama-2-70b at TP 8 and 32/8/128
# (llama-3-8b at TP 1); llama-2-7b at TP 1 (32/32/128) is not there
HEADS = ((8, 1, 128), (32, 8, 128))


def _attention_source(n_rows: int = 2) -> pd.DataFrame:
    rows = [{"batch_size": b, "isl": 128 * (i + 1), "num_heads": q, "num_key_value_heads": kv,
             "head_dim": d, "step": 1, "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16",
             "kernel_source": "fa3", "latency": 0.01 * (i + 1)}
            for q, kv, d in HEADS for b in (1, 4) for i in range(n_rows)]
    return pd.DataFrame(rows)


def _shape_meta(family: str, node: str = "") -> ProfileMeta:
    return ProfileMeta(family=family, source="imported", device="h100-sxm", model="", tp=1,
                       node=node, origin="aiconfigurator:test")


def aic_store(root: Path) -> ProfileStore:
    """An aiconfigurator-only store for h100-sxm: shape-keyed attention and GEMM tables and
    the node's collectives, written with the importer's converters."""
    store = ProfileStore(root)
    src = _attention_source()
    store.save(attention_prefill_rows(src, "ctx")[0], _shape_meta("attention_prefill"))
    store.save(attention_decode_rows(src, "gen")[0], _shape_meta("attention_decode"))
    gemm = pd.DataFrame({"gemm_dtype": "bfloat16", "m": [1, 64], "n": 8192, "k": 8192,
                         "kernel_source": "cublas", "latency": [0.01, 0.02]})
    store.save(layer_ops_rows(gemm, None, "gemm")[0], _shape_meta("layer_ops"))
    ar = pd.DataFrame({"allreduce_dtype": "bfloat16", "num_gpus": [2, 4, 8],
                       "message_size": 1024, "backend": "vllm_graph", "kernel_source": "x",
                       "latency": [0.01, 0.02, 0.03]})
    store.save(collective_rows(ar, None, "ar")[0], _shape_meta("collective", "hgx-h100"))
    return store


def _stats(n: int) -> dict[str, object]:
    t = 10.0 + np.arange(n, dtype="float64")
    return {"min_us": t, "median_us": t, "mean_us": t, "max_us": t, "std_us": 0.0,
            "count": 1}


def _model_meta(family: str, model: str = "llama-2-70b", tp: int = 8,
                dtype: str = "bf16") -> ProfileMeta:
    return ProfileMeta(family=family, source="measured", device="h100-sxm", model=model,
                       tp=tp, dtype=dtype, model_shape=model_shape_of(get_model(model)),
                       origin="test")


def _layer_ops(ops: dict[str, tuple[int, int]]) -> pd.DataFrame:
    names = list(ops)
    df = pd.DataFrame({"op": names, "num_tokens": 64, "n": [ops[o][0] for o in names],
                       "k": [ops[o][1] for o in names]})
    return pd.concat([df, pd.DataFrame(_stats(len(names)))], axis=1)


def test_aiconfigurator_only_store(tmp_path: Path) -> None:
    store = aic_store(tmp_path)
    assert store.coverage("llama-2-70b", "h100-sxm", 8) == {}  # the model's own files only
    cov = store.cover("llama-2-70b", "h100-sxm", 8)
    assert list(cov) == list(COVER_FAMILIES)
    for family in ("attention_prefill", "attention_decode"):
        c = cov[family]
        assert c.kind == "shapes" and c.path == tmp_path / f"h100-sxm/ops/tp1/{family}.parquet"
        assert c.rows == 4  # 2 batch sizes x 2 lengths with 8/1/128 heads, of 8 rows
        assert "n_q_heads=8, n_kv_heads=1, head_dim=128" in c.detail
        assert "fitted on all 8 rows" in c.detail
    coll = cov["collective"]
    assert coll.kind == "collective" and coll.rows == 3
    assert coll.path == tmp_path / "h100-sxm/network-hgx-h100/tp1/collective.parquet"
    assert "node hgx-h100: all_reduce 2..8 GPUs" in coll.detail
    # GEMM rows by shape do not make the model's layer_ops
    lo = cov["layer_ops"]
    assert not lo.covered and lo.kind == "" and lo.path is None and lo.detail == ""
    assert f"python -m profiler model=llama-2-70b tp=8 out={tmp_path}" in lo.todo
    assert "execution.profiled.fallback" in lo.fallback
    assert lo.describe() == f"{lo.fallback}. To cover it: {lo.todo}."
    for family in ("attention_mixed", "cpu_overhead"):
        assert not cov[family].covered and "import_llmservingsim" in cov[family].todo
    assert "decode-only attention" in cov["attention_mixed"].fallback

    got = store.require("llama-2-70b", "h100-sxm", 8,
                        families=("attention_prefill", "attention_decode", "collective"))
    assert got == {f: cov[f].path for f in ("attention_prefill", "attention_decode",
                                            "collective")}
    with pytest.raises(ConfigError) as err:
        store.require("llama-2-70b", "h100-sxm", 8)
    msg = str(err.value)
    assert "missing layer_ops under" in msg and "attention" not in msg.split("under")[0]
    assert "execution.kind=calibrated" in msg and msg.endswith("`execution.kind=calibrated`.")
    with pytest.raises(ConfigError) as err:
        store.require("llama-2-70b", "a100-80gb", 8, families=("layer_ops", "collective"))
    msg = str(err.value)
    assert "measure layer_ops on an a100-80gb GPU" in msg
    assert "collective: no collective table for node dgx-a100; measure with" in msg


def test_shape_tables_without_the_models_heads_do_not_cover(tmp_path: Path) -> None:
    store = aic_store(tmp_path)
    cov = store.cover("llama-2-7b", "h100-sxm", 1)
    for family in ("attention_prefill", "attention_decode"):
        c = cov[family]
        assert not c.covered
        assert "hold no rows with llama-2-7b's heads at tp=1" in c.detail
        assert "n_q_heads=32, n_kv_heads=32, head_dim=128" in c.detail
        assert "the fallback's attention" in c.fallback
        assert c.describe().startswith(c.detail + "; the fallback's attention")
    # the same table covers another model whose heads it holds
    assert store.cover("llama-3-8b", "h100-sxm", 1)["attention_decode"].kind == "shapes"
    with pytest.raises(ConfigError, match="hold no rows with llama-2-7b's heads"):
        store.require("llama-2-7b", "h100-sxm", 1, families=("attention_decode",))


def test_model_files_come_first_across_stores(tmp_path: Path) -> None:
    shapes = aic_store(tmp_path / "aic")
    own = ProfileStore(tmp_path / "own")
    dec = pd.DataFrame({"n_q_heads": 8, "n_kv_heads": 1, "head_dim": 128,
                        "batch_size": [1, 2], "kv_len": 1024, **_stats(2)})
    own.save(dec, _model_meta("attention_decode", dtype="fp16"))
    cov = cover([shapes, own], "llama-2-70b", "h100-sxm", 8)
    # as the profiled model: the model's own file in any store beats a shape-keyed table
    assert cov["attention_decode"].kind == "model" and cov["attention_decode"].rows == 2
    assert cov["attention_decode"].path.name == "attention_decode-fp16.parquet"  # bf16 -> fp16
    assert cov["attention_prefill"].kind == "shapes"
    assert cov["collective"].path.is_relative_to(tmp_path / "aic")
    assert cover([own], "llama-2-70b", "h100-sxm", 8, "fp8")["attention_decode"].path is None
    assert own.cover("llama-2-70b", "h100-sxm", 8) == cover([own], "llama-2-70b", "h100-sxm", 8)


def test_layer_ops_and_collective_details(tmp_path: Path) -> None:
    store = aic_store(tmp_path)
    ops = {"embedding": (8192, 0), "input_norm": (8192, 0), "post_norm": (8192, 0),
           "qkv_proj": (1280, 8192), "o_proj": (8192, 1024), "rope": (1152, 0),
           "gate_up_proj": (7168, 8192), "act": (3584, 0), "down_proj": (8192, 3584)}
    store.save(_layer_ops(ops), _model_meta("layer_ops"))
    cov = store.cover("llama-2-70b", "h100-sxm", 8)
    detail = cov["layer_ops"].detail
    assert cov["layer_ops"].kind == "model" and cov["layer_ops"].rows == len(ops)
    assert "add fused into the norms" in detail and "the fallback prices lm_head" in detail
    # without act the profiled model prices the whole MLP with the fallback
    store.save(_layer_ops({"qkv_proj": (5120, 8192), "gate_up_proj": (28672, 8192),
                           "down_proj": (8192, 14336)}), _model_meta("layer_ops", tp=2))
    detail = store.cover("llama-2-70b", "h100-sxm", 2)["layer_ops"].detail
    assert detail.endswith("lm_head, gate_up_proj, act, down_proj"), detail
    # TP 16 lies beyond the 2..8 GPUs the all-reduce was measured over
    store.save(_layer_ops({"qkv_proj": ((4 + 2 * 1) * 128, 8192)}), _model_meta("layer_ops", tp=16))
    far = store.cover("llama-2-70b", "h100-sxm", 16)["collective"]
    assert far.covered and "the fallback prices the TP all-reduce" in far.detail
    other = store.cover("llama-2-70b", "h100-sxm", 8, node="h100-pairwise-nvlink")
    assert not other["collective"].covered
    assert "no collective table for node h100-pairwise-nvlink" in other["collective"].detail


def test_format_coverage_is_a_table(tmp_path: Path) -> None:
    text = format_coverage(aic_store(tmp_path).cover("llama-2-70b", "h100-sxm", 8),
                           title="T")
    lines = text.splitlines()
    assert lines[0] == "T" and lines[1].split() == ["family", "covered", "by", "rows", "file"]
    row = next(line for line in lines if line.startswith("attention_prefill "))
    assert row.split()[1:3] == ["shapes", "4"]
    assert next(line for line in lines if line.startswith("layer_ops ")).split()[1] == "MISSING"
    assert lines[-1] == "3 of 6 families covered"


def test_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aic_store(tmp_path / "aic")
    (tmp_path / "empty").mkdir()
    rc = main(["coverage", "--store", str(tmp_path / "empty"), "--store",
               str(tmp_path / "aic"), "--model", "llama-2-70b", "--sku", "h100-sxm",
               "--tp", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("Profiles for llama-2-70b on h100-sxm at tp=8 (bf16, node hgx-h100)")
    assert f"{tmp_path / 'empty'}, {tmp_path / 'aic'}" in out.splitlines()[0]
    assert "attention_decode: shape-keyed table" in out and "3 of 6 families covered" in out


@pytest.mark.parametrize(("flag", "value", "allowed"), [
    ("--model", "llama-9b", "allowed values are llama-2-7b, "),
    ("--sku", "h100", "allowed values are "),
    ("--tp", "3", "allowed values are 1, 2, 4, 8, 16, 32, 64"),
    ("--node", "dgx-a100", "allowed values for --sku h100-sxm are hgx-h100"),
    ("--dtype", "fp4", "allowed values are bf16, "),
    ("--store", "missing", "no such directory"),
])
def test_cli_bad_values_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      flag: str, value: str, allowed: str) -> None:
    args = {"--store": str(tmp_path), "--model": "llama-2-70b", "--sku": "h100-sxm",
            "--tp": "8"}
    args[flag] = str(tmp_path / value) if flag == "--store" else value
    argv = ["coverage"] + [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {flag}=") and allowed in captured.err
    if flag == "--sku":
        assert "h100-sxm" in captured.err and "a100-80gb" in captured.err


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    aic_store(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "simulator.profiles", "coverage", "--store", str(tmp_path),
         "--model", "llama-3-8b", "--sku", "h100-sxm", "--tp", "1"],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert "attention_prefill  shapes" in run.stdout
