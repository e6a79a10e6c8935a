"""Vidur CSV importer: row counts, units, shapes, names, on the reference data and on
small hand-written CSVs in Vidur's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler.import_vidur import OP_NAMES, import_vidur, main
from simulator.catalogue import get_node
from simulator.errors import ConfigError
from simulator.profiles import ProfileStore, read_profile

STATS = ("min", "max", "mean", "median", "std")


def test_reference_import_counts_units_and_shapes(
    reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = reference_dir / "vidur" / "profiling"
    assert main([str(src), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    store = ProfileStore(tmp_path)
    entries = store.entries()

    mlp_csvs = sorted((src / "compute").glob("*/*/*/mlp.csv"))
    net_dirs = sorted(p for p in (src / "network").iterdir() if p.is_dir())
    n_tp_files = sum(pd.read_csv(c)["num_tensor_parallel_workers"].nunique() for c in mlp_csvs)
    assert len(entries) == n_tp_files + len(net_dirs)
    assert f"{len(entries)} files, {entries['rows'].sum()} rows" in out

    # Every mlp.csv row becomes one layer_ops row per operator, split by TP.
    csv = src / "compute/h100/meta-llama/Llama-2-70b-hf/mlp.csv"
    raw = pd.read_csv(csv)
    ops = entries[(entries.family == "layer_ops") & (entries.device == "h100-sxm")
                  & (entries.model == "llama-2-70b")]
    assert sorted(ops["tp"]) == [1, 2, 4, 8]
    assert ops["rows"].sum() == len(OP_NAMES) * len(raw)
    for tp, rows in zip(ops["tp"], ops["rows"], strict=True):
        assert rows == len(OP_NAMES) * (raw["num_tensor_parallel_workers"] == tp).sum()

    # A CSV cell in ms equals the stored us / 1000, with per-GPU GEMM shapes at TP 8.
    df, meta = store.load("h100-sxm", "llama-2-70b", 8, "layer_ops", dtype="fp16")
    assert meta.dtype == "fp16" and meta.source == "imported"
    assert meta.origin == "vidur:compute/h100/meta-llama/Llama-2-70b-hf/mlp.csv"
    src_row = raw[raw["num_tensor_parallel_workers"] == 8].iloc[5]
    tokens = int(src_row["num_tokens"])
    for vidur_op, op in OP_NAMES.items():
        got = df[(df["op"] == op) & (df["num_tokens"] == tokens)]
        assert len(got) == 1
        for stat in STATS:
            assert got[f"{stat}_us"].iloc[0] / 1000 == pytest.approx(
                src_row[f"time_stats.{vidur_op}.{stat}"], rel=1e-12)
        assert got["count"].iloc[0] == 20
    shape = df[df["num_tokens"] == tokens].set_index("op")[["n", "k"]]
    assert tuple(shape.loc["qkv_proj"]) == ((8 + 2 * 1) * 128, 8192)
    assert tuple(shape.loc["o_proj"]) == (8192, 8 * 128)
    assert tuple(shape.loc["gate_up_proj"]) == (2 * 28672 // 8, 8192)
    assert tuple(shape.loc["down_proj"]) == (8192, 28672 // 8)
    assert tuple(shape.loc["embedding"]) == (8192, 0)

    # Network: all source rows of both collectives in one file per catalogue node.
    for node_dir, node in (("h100_dgx", "hgx-h100"), ("a100_dgx", "dgx-a100"),
                           ("a100_pairwise_nvlink", "a100-pairwise-nvlink")):
        parts = [pd.read_csv(src / "network" / node_dir / f"{op}.csv")
                 for op in ("all_reduce", "send_recv")]
        coll, cmeta = store.load(get_node(node).sku, "", 1, "collective", node=node)
        assert cmeta.node == node and len(coll) == sum(len(p) for p in parts)
        ar = parts[0].iloc[3]
        got = coll[(coll["op"] == "all_reduce") & (coll["size_bytes"] == ar["size"])
                   & (coll["num_gpus"] == ar["num_workers"])
                   & (coll["gpus_per_node"] == ar["devices_per_node"])]
        # (a few keys were measured twice, so look for the value among the matches)
        assert np.isclose(got["median_us"] / 1000, ar["time_stats.all_reduce.median"],
                          rtol=1e-12, atol=0).any()
        assert set(got["count"]) == {3}


def _vidur_stats(n: int, op: str, base_ms: float) -> dict[str, np.ndarray]:
    t = base_ms + 0.01 * np.arange(n)
    return {f"time_stats.{op}.min": t * 0.9, f"time_stats.{op}.max": t * 1.2,
            f"time_stats.{op}.mean": t * 1.01, f"time_stats.{op}.median": t,
            f"time_stats.{op}.std": np.full(n, 0.001)}


def _attention_csv(path: Path, n_q_head: int = 32) -> pd.DataFrame:
    """A Vidur-layout attention.csv for Llama-2-7B: 2 prefill + 3 decode rows per TP 1, 2."""
    rows = []
    for tp in (1, 2):
        rows += [dict(is_prefill=True, batch_size=1, prefill_chunk_size=c, kv_cache_size=p,
                      num_tensor_parallel_workers=tp) for c, p in ((256, 0), (512, 1024))]
        rows += [dict(is_prefill=False, batch_size=b, prefill_chunk_size=0, kv_cache_size=kv,
                      num_tensor_parallel_workers=tp) for b, kv in ((1, 100), (8, 2048), (32, 4))]
    df = pd.DataFrame(rows)
    n = len(df)
    df = df.assign(n_embd=4096, n_q_head=n_q_head, n_kv_head=32, block_size=16,
                   max_model_len=4096, attention_backend="FLASHINFER")
    for op, base in (("attn_prefill", 0.5), ("attn_decode", 0.05), ("attn_kv_cache_save", 0.01)):
        stats = pd.DataFrame(_vidur_stats(n, op, base))
        if op == "attn_prefill":
            stats[~df["is_prefill"].to_numpy()] = np.nan
        if op == "attn_decode":
            stats[df["is_prefill"].to_numpy()] = np.nan
        df = pd.concat([stats, df], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path)
    return df


def test_attention_csv_becomes_prefill_and_decode(tmp_path: Path) -> None:
    src = tmp_path / "profiling"
    raw = _attention_csv(src / "compute/h100/meta-llama/Llama-2-7b-hf/attention.csv")
    written = import_vidur(src, tmp_path / "store")
    assert sorted(w.path.name for w in written) == ["attention_decode-fp16.parquet"] * 2 + [
        "attention_prefill-fp16.parquet"] * 2
    store = ProfileStore(tmp_path / "store")
    pre, _ = store.load("h100-sxm", "llama-2-7b", 2, "attention_prefill")
    dec, meta = store.load("h100-sxm", "llama-2-7b", 2, "attention_decode")
    assert meta.model_shape["n_heads"] == 32 and meta.tp == 2
    assert len(pre) == 2 and len(dec) == 3
    assert set(pre["n_q_heads"]) == {16} and set(pre["n_kv_heads"]) == {16}
    assert list(pre["chunk_tokens"]) == [256, 512] and list(pre["prior_kv"]) == [0, 1024]
    assert list(dec["kv_len"]) == [100, 2048, 4] and list(dec["batch_size"]) == [1, 8, 32]
    # Stored time = attention kernel + KV-cache write, ms -> us.
    src_rows = raw[(raw["num_tensor_parallel_workers"] == 2) & ~raw["is_prefill"]]
    expected = (src_rows["time_stats.attn_decode.mean"]
                + src_rows["time_stats.attn_kv_cache_save.mean"]).to_numpy() * 1000
    np.testing.assert_allclose(dec["mean_us"], expected, rtol=1e-12)
    assert set(dec["count"]) == {5}


def test_attention_csv_shape_mismatch_names_file_column_row(tmp_path: Path) -> None:
    src = tmp_path / "profiling"
    csv = src / "compute/h100/meta-llama/Llama-2-7b-hf/attention.csv"
    raw = _attention_csv(csv)
    raw.loc[3, "n_q_head"] = 64
    raw.to_csv(csv, index=False)
    with pytest.raises(ConfigError, match=r"attention\.csv: n_q_head\[row 3\].*has 32"):
        import_vidur(src, tmp_path / "store")


def test_unknown_names_are_skipped_or_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "profiling"
    _attention_csv(src / "compute/a40/meta-llama/Llama-2-7b-hf/attention.csv")
    _attention_csv(src / "compute/h100/acme/Mystery-7b/attention.csv")
    (src / "network/tpu_pod").mkdir(parents=True)
    assert import_vidur(src, tmp_path / "store") == []
    err = capsys.readouterr().err
    assert "unknown Vidur sku 'a40'" in err and "'acme/Mystery-7b'" in err
    assert "unknown Vidur node 'tpu_pod'" in err
    with pytest.raises(ConfigError, match="a40"):
        import_vidur(src, tmp_path / "store", strict=True)
    written = import_vidur(src, tmp_path / "store", aliases={"acme/Mystery-7b": "llama-2-7b"})
    assert {w.path.parts[-3] for w in written} == {"llama-2-7b"}
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "store")]) == 2
    assert "SRC_DIR" in capsys.readouterr().err


def test_refuses_to_replace_another_tools_file(tmp_path: Path) -> None:
    src = tmp_path / "profiling"
    _attention_csv(src / "compute/h100/meta-llama/Llama-2-7b-hf/attention.csv")
    written = import_vidur(src, tmp_path / "store")
    df, meta = read_profile(written[0].path)
    other = type(meta)(**{**meta.__dict__, "origin": "aiconfigurator:x"})
    ProfileStore(tmp_path / "store").save(df, other)
    with pytest.raises(ConfigError, match="already holds a profile from 'aiconfigurator'"):
        import_vidur(src, tmp_path / "store")
    assert len(import_vidur(src, tmp_path / "store", force=True)) == 4


def _mlp_csv(path: Path) -> pd.DataFrame:
    """A Vidur-layout mlp.csv for Llama-2-7B: 3 token counts at TP 1."""
    n = 3
    df = pd.DataFrame({"n_head": 32, "n_kv_head": 32, "n_embd": 4096,
                       "n_expanded_embd": 11008, "use_gated_mlp": True,
                       "num_tokens": [1, 8, 64], "num_tensor_parallel_workers": 1},
                      index=range(n))
    for op in OP_NAMES:
        df = pd.concat([df, pd.DataFrame(_vidur_stats(n, op, 0.02))], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df


@pytest.mark.parametrize(("name", "col", "value", "text"), [
    ("mlp.csv", "num_tokens", float("nan"), "nan"),
    ("mlp.csv", "num_tokens", 2.5, "2.5"),
    ("mlp.csv", "num_tensor_parallel_workers", "two", "'two'"),
    ("attention.csv", "kv_cache_size", float("nan"), "nan"),
    ("attention.csv", "batch_size", 0, "0"),
])
def test_bad_source_shape_cell_names_the_csv_column_row(
        tmp_path: Path, name: str, col: str, value: object, text: str) -> None:
    src = tmp_path / "profiling"
    csv = src / "compute/h100/meta-llama/Llama-2-7b-hf" / name
    raw = _mlp_csv(csv) if name == "mlp.csv" else _attention_csv(csv)
    raw[col] = raw[col].astype(object)
    raw.loc[2, col] = value
    raw.to_csv(csv, index=False)
    with pytest.raises(ConfigError) as err:
        import_vidur(src, tmp_path / "store")
    msg = str(err.value)
    assert msg.startswith(f"{csv}: {col}[row 2]={text} is invalid: must be a whole number"), msg
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.parquet"))


def test_bad_network_cell_and_time_in_a_subset_name_the_csv_row(tmp_path: Path) -> None:
    src = tmp_path / "profiling"
    net = src / "network/h100_dgx/all_reduce.csv"
    net.parent.mkdir(parents=True)
    df = pd.DataFrame({"num_workers": [2, 4, 8], "devices_per_node": [2, 4, 8],
                       "size": [1024, None, 4096], **_vidur_stats(3, "all_reduce", 0.01)})
    df.to_csv(net, index=False)
    with pytest.raises(ConfigError, match=r"all_reduce\.csv: size\[row 1\]=nan"):
        import_vidur(src, tmp_path / "store")
    # attention.csv: decode rows are a subset; a bad time names its row in the CSV
    net.unlink()
    csv = src / "compute/h100/meta-llama/Llama-2-7b-hf/attention.csv"
    raw = _attention_csv(csv)
    raw.loc[3, "time_stats.attn_decode.mean"] = np.nan  # the 2nd decode row of the CSV
    raw.to_csv(csv, index=False)
    with pytest.raises(ConfigError,
                       match=r"attention\.csv: time_stats\.attn_decode\.mean\[row 3\]"):
        import_vidur(src, tmp_path / "store")
