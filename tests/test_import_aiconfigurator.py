"""aiconfigurator importer: bf16 and fp8 files, merged repeats, units and mapped shapes, on
the reference tables and on a small hand-made system directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler.import_aiconfigurator import (
    FILES,
    SYSTEMS,
    import_aiconfigurator,
    main,
)
from simulator.errors import ConfigError
from simulator.profiles import ProfileStore


def _bf16_attention(df: pd.DataFrame, kv: str = "bfloat16") -> pd.DataFrame:
    keep = (df["attn_dtype"] == "bfloat16") & (df["kv_cache_dtype"] == kv)
    if "window_size" in df.columns:
        keep &= df["window_size"] == 0
    return df[keep]


FP8_SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm")  # A100 has no fp8 rows


def test_reference_import_counts_and_values(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = reference_dir / "aiconfigurator"
    assert main([str(src), str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    store = ProfileStore(tmp_path)
    entries = store.entries()
    # bf16: 2 attention + layer_ops + collective per system; fp8: 2 attention + layer_ops
    assert len(entries) == 4 * len(SYSTEMS) + 3 * len(FP8_SYSTEMS)
    assert sorted(entries[entries["dtype"] == "fp8"]["device"].unique()) == sorted(
        SYSTEMS[s] for s in FP8_SYSTEMS)
    assert f"{len(entries)} files, {entries['rows'].sum()} rows" in out
    assert "NCCL rows of ops other than all_reduce, all_gather skipped" in err

    for system, sku in SYSTEMS.items():
        tables = {k: pd.read_parquet(src / system / f) for k, f in FILES.items()}
        # attention: every bf16 / full-attention source row is counted once
        for kind, family in (("context", "attention_prefill"),
                             ("generation", "attention_decode")):
            raw = _bf16_attention(tables[kind])
            df, meta = store.load_shapes(sku, family)
            assert meta.model == "" and meta.tp == 1 and meta.source == "imported"
            assert df["count"].sum() == len(raw)
            keys = ["batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim",
                    "step", "kernel_source"]
            assert len(df) == len(raw.drop_duplicates(keys))
        gemm = tables["gemm"][tables["gemm"]["gemm_dtype"] == "bfloat16"]
        moe = tables["moe"][tables["moe"]["moe_dtype"] == "bfloat16"]
        ops, _ = store.load_shapes(sku, "layer_ops")
        assert ops[ops["op"] == "gemm"]["count"].sum() == len(gemm)
        assert ops[ops["op"] == "moe_experts"]["count"].sum() == len(moe)
        nccl = tables["nccl"]
        nccl = nccl[(nccl["nccl_dtype"] == "half")
                    & nccl["op_name"].isin(["all_reduce", "all_gather"])]
        for kind, family in (("context", "attention_prefill"),
                             ("generation", "attention_decode")):
            raw8 = _bf16_attention(tables[kind], kv="fp8")
            assert (len(raw8) > 0) == (system in FP8_SYSTEMS)
            if len(raw8):
                df8, meta8 = store.load_shapes(sku, family, dtype="fp8")
                assert meta8.dtype == "fp8" and df8["count"].sum() == len(raw8)
        if system in FP8_SYSTEMS:
            ops8, meta8 = store.load_shapes(sku, "layer_ops", dtype="fp8")
            assert meta8.dtype == "fp8"
            g8 = tables["gemm"][tables["gemm"]["gemm_dtype"] == "fp8"]
            m8 = tables["moe"][tables["moe"]["moe_dtype"] == "fp8"]
            assert ops8[ops8["op"] == "gemm"]["count"].sum() == len(g8) > 0
            assert ops8[ops8["op"] == "moe_experts"]["count"].sum() == len(m8) > 0
        else:
            with pytest.raises(ConfigError, match="fp8"):
                store.load_shapes(sku, "layer_ops", dtype="fp8")
        coll, cmeta = store.load(sku, "", 1, "collective")
        assert cmeta.node == f"hgx-{sku.split('-')[0]}" or cmeta.node == "dgx-a100"
        assert coll["count"].sum() == len(tables["allreduce"]) + len(nccl)
        assert (coll["gpus_per_node"] == coll["num_gpus"]).all()

    # One H100 decode cell: ms -> us, kv_len = isl + step, heads per GPU as given.
    gen = _bf16_attention(pd.read_parquet(src / "h100_sxm" / FILES["generation"]))
    cell = gen[(gen["num_heads"] == 8) & (gen["num_key_value_heads"] == 1)
               & (gen["head_dim"] == 128) & (gen["batch_size"] == 16)].iloc[2]
    dec, _ = store.load_shapes("h100-sxm", "attention_decode", model="llama-2-70b", tp=8)
    assert set(dec["n_q_heads"]) == {8} and set(dec["n_kv_heads"]) == {1}
    hit = dec[(dec["batch_size"] == 16) & (dec["kv_len"] == cell["isl"] + cell["step"])]
    assert len(hit) == 1 and hit["count"].iloc[0] == 1
    assert hit["mean_us"].iloc[0] / 1000 == pytest.approx(cell["latency"], rel=1e-12)
    assert hit["min_us"].iloc[0] == hit["max_us"].iloc[0] and hit["std_us"].iloc[0] == 0

    # A100's repeated context rows are merged: mean of the repeats, count = repeats.
    ctx = _bf16_attention(pd.read_parquet(src / "a100_sxm" / FILES["context"]))
    keys = ["batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"]
    dup = ctx[ctx.duplicated(keys, keep=False)]
    first = dup.iloc[0]
    same = dup[(dup[keys] == first[keys]).all(axis=1)]["latency"]
    pre, _ = store.load_shapes("a100-80gb", "attention_prefill")
    row = pre[(pre["batch_size"] == first["batch_size"]) & (pre["chunk_tokens"] == first["isl"])
              & (pre["n_q_heads"] == first["num_heads"])
              & (pre["n_kv_heads"] == first["num_key_value_heads"])]
    assert row["count"].iloc[0] == len(same) >= 2 and (row["prior_kv"] == 0).all()
    assert row["mean_us"].iloc[0] == pytest.approx(same.mean() * 1000, rel=1e-12)
    assert row["max_us"].iloc[0] == pytest.approx(same.max() * 1000, rel=1e-12)

    # MoE: per-GPU expert width; collectives: bytes = 2 x bf16 elements.
    moe = pd.read_parquet(src / "h100_sxm" / FILES["moe"])
    m = moe[(moe["moe_dtype"] == "bfloat16") & (moe["moe_tp_size"] == 4)].iloc[0]
    ops, _ = store.load_shapes("h100-sxm", "layer_ops")
    got = ops[(ops["op"] == "moe_experts") & (ops["num_tokens"] == m["num_tokens"])
              & (ops["k"] == m["hidden_size"]) & (ops["moe_tp"] == 4)
              & (ops["experts"] == m["num_experts"]) & (ops["topk"] == m["topk"])
              & (ops["distribution"] == m["distribution"])
              & (ops["n"] == m["inter_size"] // 4)]
    assert len(got) == 1
    assert got["median_us"].iloc[0] / 1000 == pytest.approx(m["latency"], rel=1e-12)
    ar = pd.read_parquet(src / "h100_sxm" / FILES["allreduce"]).iloc[7]
    coll, _ = store.load("h100-sxm", "", 1, "collective")
    got = coll[(coll["backend"] == ar["backend"]) & (coll["num_gpus"] == ar["num_gpus"])
               & (coll["size_bytes"] == 2 * ar["message_size"])]
    assert got["mean_us"].iloc[0] / 1000 == pytest.approx(ar["latency"], rel=1e-12)


def _system(root: Path, name: str) -> None:
    """A tiny system directory in aiconfigurator's layout: GEMM rows only."""
    df = pd.DataFrame({
        "framework": "VLLM", "version": "0.0.1", "device": "X", "op_name": "gemm",
        "kernel_source": "k", "gemm_dtype": ["bfloat16", "bfloat16", "fp8"],
        "m": [1, 2, 1], "n": 4096, "k": 4096, "latency": [0.01, 0.02, 0.005],
    })
    (root / name / "gemm").mkdir(parents=True)
    df.to_parquet(root / name / FILES["gemm"])


def test_small_system_and_unknown_names(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    _system(src, "h100_sxm")
    _system(src, "mi300x")
    written = import_aiconfigurator(src, tmp_path / "store")
    assert [w.path.relative_to(tmp_path / "store").as_posix() for w in written] == [
        "h100-sxm/ops/tp1/layer_ops.parquet", "h100-sxm/ops/tp1/layer_ops-fp8.parquet"]
    assert written[0].rows == 2 and written[0].source_rows == 2  # bf16 rows only
    assert written[1].rows == 1 and written[1].source_rows == 1  # the fp8 row, apart
    assert "unknown aiconfigurator system 'mi300x'" in capsys.readouterr().err
    store = ProfileStore(tmp_path / "store")
    df, meta = store.load_shapes("h100-sxm", "layer_ops")
    np.testing.assert_allclose(df["mean_us"], [10.0, 20.0])
    assert "version 0.0.1" in meta.origin and set(df["op"]) == {"gemm"}
    df8, meta8 = store.load_shapes("h100-sxm", "layer_ops", dtype="fp8")
    np.testing.assert_allclose(df8["mean_us"], [5.0])
    assert meta8.dtype == "fp8" and meta.dtype == "bf16"
    only = import_aiconfigurator(src, tmp_path / "bf16only", dtypes=["bf16"])
    assert [w.path.name for w in only] == ["layer_ops.parquet"]
    with pytest.raises(ConfigError, match="--dtypes"):
        import_aiconfigurator(src, tmp_path / "x", dtypes=["fp4"])
    with pytest.raises(ConfigError, match="mi300x"):
        import_aiconfigurator(src, tmp_path / "store", strict=True)
    with pytest.raises(ConfigError, match="--systems"):
        import_aiconfigurator(src, tmp_path / "store", systems=["b200_sxm"])
    assert main([str(src), str(tmp_path / "s2"), "--systems", "h100_sxm"]) == 0
    assert "2 files, 3 rows" in capsys.readouterr().out
    assert main([str(src), str(tmp_path / "s3"), "--systems", "h100_sxm", "--dtypes", "bf16"]) == 0
    assert "1 files, 2 rows" in capsys.readouterr().out


def test_bad_latency_is_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _system(src, "h100_sxm")
    path = src / "h100_sxm" / FILES["gemm"]
    df = pd.read_parquet(path)
    df.loc[1, "latency"] = -1.0
    df.to_parquet(path)
    with pytest.raises(ConfigError, match=r"h100_sxm: latency\[row 1"):
        import_aiconfigurator(src, tmp_path / "store")
