"""Profile files and the profile store: round trips, validation messages, lookups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.catalogue import get_model
from simulator.errors import ConfigError
from simulator.profiles import (
    FAMILIES,
    METADATA_KEY,
    ProfileMeta,
    ProfileStore,
    model_shape_of,
    read_meta,
    read_profile,
    write_profile,
)

SHAPE_70B = model_shape_of(get_model("llama-2-70b"))


def stats(n: int, base: float = 10.0) -> dict[str, object]:
    t = base + np.arange(n, dtype="float64")
    return {"min_us": t - 1, "median_us": t, "mean_us": t + 0.1, "max_us": t + 2,
            "std_us": np.full(n, 0.5), "count": np.full(n, 20, dtype="int64")}


def frame(family: str, n: int = 3) -> pd.DataFrame:
    """A valid table of ``family`` for llama-2-70b at TP 8 (collective: a node)."""
    if family == "attention_prefill":
        cols = {"n_q_heads": 8, "n_kv_heads": 1, "head_dim": 128, "batch_size": 1,
                "chunk_tokens": np.arange(1, n + 1) * 128, "prior_kv": 0}
    elif family == "attention_decode":
        cols = {"n_q_heads": 8, "n_kv_heads": 1, "head_dim": 128,
                "batch_size": np.arange(1, n + 1), "kv_len": 1024}
    elif family == "attention_mixed":
        cols = {"n_q_heads": 8, "n_kv_heads": 1, "head_dim": 128, "chunk_tokens": 512,
                "prior_kv": 0, "batch_size": np.arange(1, n + 1), "kv_len": 1024}
    elif family == "layer_ops":
        ops = ["qkv_proj", "o_proj", "down_proj"][:n]
        shapes = {"qkv_proj": (1280, 8192), "o_proj": (8192, 1024), "down_proj": (8192, 3584)}
        cols = {"op": ops, "num_tokens": 64, "n": [shapes[o][0] for o in ops],
                "k": [shapes[o][1] for o in ops]}
    elif family == "collective":
        cols = {"op": "all_reduce", "num_gpus": 8, "gpus_per_node": 8,
                "size_bytes": 2 ** np.arange(10, 10 + n)}
    else:
        cols = {"op": "schedule", "batch_size": np.arange(1, n + 1)}
    df = pd.DataFrame({k: (v if np.ndim(v) else [v] * n) for k, v in cols.items()})
    return pd.concat([df, pd.DataFrame(stats(n))], axis=1)


def meta_for(family: str, /, **kw: object) -> ProfileMeta:
    """Metadata of ``frame(family)``; ``kw`` overrides any field (family included)."""
    if family == "collective":
        base = {"device": "h100-sxm", "model": "", "tp": 1, "node": "hgx-h100"}
    else:
        base = {"device": "h100-sxm", "model": "llama-2-70b", "tp": 8,
                "model_shape": dict(SHAPE_70B)}
    base = {"family": family, "source": "measured", "origin": "test", **base, **kw}
    return ProfileMeta(**base)


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_every_family(tmp_path: Path, family: str) -> None:
    df, meta = frame(family), meta_for(family, date="2026-11-24", torch="2.13.0")
    path = write_profile(df, tmp_path / "x" / "p.parquet", meta)
    back, meta2 = read_profile(path)
    assert meta2 == meta
    expected = df.copy()
    if family == "layer_ops":  # experts/topk are added (0) for dense ops
        expected["experts"] = 0
        expected["topk"] = 0
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["count"].dtype == "int64" and back["median_us"].dtype == "float64"
    pf = pq.ParquetFile(path)
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    assert json.loads(pf.schema_arrow.metadata[METADATA_KEY])["family"] == family
    assert [p.name for p in path.parent.iterdir()] == ["p.parquet"]  # no temp file left


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    df = frame("attention_decode")
    df["kernel_source"] = "fa3"
    back, _ = read_profile(write_profile(df, tmp_path / "p.parquet",
                                         meta_for("attention_decode")))
    assert list(back["kernel_source"]) == ["fa3"] * 3


def _bad(df: pd.DataFrame, col: str, row: int, value: object) -> pd.DataFrame:
    df = df.copy()
    if col in df.columns and not isinstance(value, str) and df[col].dtype == "int64":
        df[col] = df[col].astype("float64")
    df[col] = df[col].astype(object) if isinstance(value, str) or value is None else df[col]
    df.loc[row, col] = value
    return df


BAD_CELLS = [
    ("attention_decode", "kv_len", 2, 10.5, "whole number"),
    ("attention_decode", "median_us", 1, -1.0, "finite time >= 0"),
    ("attention_decode", "mean_us", 2, float("nan"), "finite time >= 0"),
    ("attention_decode", "count", 1, 0, ">= 1"),
    ("attention_decode", "min_us", 2, 1e9, "<= median_us"),
    ("attention_decode", "max_us", 1, 0.5, None),  # median > max: reported on median_us
    ("attention_decode", "n_q_heads", 2, 16, "n_q_heads=8"),
    ("attention_prefill", "n_kv_heads", 1, 8, "n_kv_heads=1"),
    ("layer_ops", "op", 2, "softmax", "allowed values"),
    ("layer_ops", "op", 1, None, "must be a string"),
    ("layer_ops", "n", 0, 1024, "n in [1280] for op qkv_proj"),
    ("layer_ops", "k", 2, 28672, "k in [3584] for op down_proj"),
    ("collective", "op", 1, "broadcast", "allowed values"),
    ("collective", "size_bytes", 2, -4, ">= 1"),
    ("cpu_overhead", "op", 0, "decode", "allowed values"),
]


@pytest.mark.parametrize(("family", "col", "row", "value", "text"), BAD_CELLS)
def test_write_error_names_file_column_row(tmp_path: Path, family: str, col: str, row: int,
                                           value: object, text: str | None) -> None:
    path = tmp_path / "bad.parquet"
    df = _bad(frame(family), col, row, value)
    with pytest.raises(ConfigError) as err:
        write_profile(df, path, meta_for(family))
    msg = str(err.value)
    named = "median_us" if col == "max_us" else col
    assert str(path) in msg and f"{named}[row {row}]" in msg, msg
    if text:
        assert text in msg
    assert not path.exists()


def test_missing_column_and_empty_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad\.parquet: column kv_len.*missing"):
        write_profile(frame("attention_decode").drop(columns="kv_len"),
                      tmp_path / "bad.parquet", meta_for("attention_decode"))
    with pytest.raises(ConfigError, match=r"column count.*missing"):
        write_profile(frame("collective").drop(columns="count"),
                      tmp_path / "bad.parquet", meta_for("collective"))
    with pytest.raises(ConfigError, match="no rows"):
        write_profile(frame("collective").iloc[:0], tmp_path / "bad.parquet",
                      meta_for("collective"))


def test_moe_rows_need_experts_and_topk(tmp_path: Path) -> None:
    df = frame("layer_ops", 1)
    df.loc[0, "op"] = "moe_experts"
    with pytest.raises(ConfigError, match=r"column experts.*moe_experts"):
        write_profile(df, tmp_path / "m.parquet", meta_for("layer_ops", model="", tp=1,
                                                            model_shape={}))
    df["experts"], df["topk"] = 8, 0
    with pytest.raises(ConfigError, match=r"topk\[row 0\].*>= 1 for moe_experts"):
        write_profile(df, tmp_path / "m.parquet", meta_for("layer_ops", model="", tp=1,
                                                            model_shape={}))


@pytest.mark.parametrize(("change", "text"), [
    ({"family": "mlp"}, "metadata.family"),
    ({"source": "guessed"}, "metadata.source"),
    ({"dtype": "fp64"}, "metadata.dtype"),
    ({"tp": 0}, "metadata.tp"),
    ({"tp": 3}, "must divide the model's n_heads=64"),
    ({"device": "h100/../x"}, "metadata.device"),
    ({"model_shape": {**SHAPE_70B, "hidden": 4096}}, "model_shape.hidden"),
    ({"model_shape": {}}, "model_shape.hidden"),
    ({"node": "hgx-h100"}, "metadata.node"),
    ({"model": "", "tp": 2, "model_shape": {}}, "shape-keyed"),
])
def test_bad_metadata_is_named(tmp_path: Path, change: dict, text: str) -> None:
    meta = meta_for("attention_decode", **change)
    with pytest.raises(ConfigError, match=r"bad\.parquet") as err:
        write_profile(frame("attention_decode"), tmp_path / "bad.parquet", meta)
    assert text in str(err.value)


def test_collective_needs_node_and_tp1(tmp_path: Path) -> None:
    for change in ({"node": ""}, {"tp": 2}, {"model": "llama-2-70b"}):
        with pytest.raises(ConfigError, match=r"bad\.parquet: metadata"):
            write_profile(frame("collective"), tmp_path / "bad.parquet",
                          meta_for("collective", **change))


def _raw_write(path: Path, df: pd.DataFrame, meta_json: bytes | None) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({METADATA_KEY: meta_json} if meta_json else {})
    pq.write_table(table, path)


def test_read_validates_too(tmp_path: Path) -> None:
    path = tmp_path / "foreign.parquet"
    df = frame("attention_decode")
    df.loc[1, "median_us"] = -3.0
    _raw_write(path, df, meta_for("attention_decode").to_json().encode())
    with pytest.raises(ConfigError, match=r"foreign\.parquet: median_us\[row 1\]"):
        read_profile(path)
    _raw_write(path, frame("attention_decode"), None)
    with pytest.raises(ConfigError, match="not a vidur_search profile"):
        read_profile(path)
    bad_meta = json.loads(meta_for("attention_decode").to_json())
    bad_meta["colour"] = "red"
    _raw_write(path, frame("attention_decode"), json.dumps(bad_meta).encode())
    with pytest.raises(ConfigError, match=r"metadata\.colour.*unknown key"):
        read_profile(path)
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="not a Parquet file"):
        read_meta(tmp_path / "text.parquet")


def test_store_layout_and_load(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    m = meta_for("attention_decode")
    assert store.path_for(m) == tmp_path / "h100-sxm/llama-2-70b/tp8/attention_decode.parquet"
    assert store.path_for(meta_for("layer_ops", dtype="fp16")).name == "layer_ops-fp16.parquet"
    coll = meta_for("collective")
    assert store.path_for(coll) == tmp_path / "h100-sxm/network-hgx-h100/tp1/collective.parquet"
    shapes = meta_for("attention_prefill", model="", tp=1, model_shape={})
    assert store.path_for(shapes) == tmp_path / "h100-sxm/ops/tp1/attention_prefill.parquet"
    store.save(frame("attention_decode"), m)
    df, back = store.load("h100-sxm", "llama-2-70b", 8, "attention_decode")
    assert back == m and len(df) == 3
    store.save(frame("collective"), coll)
    _, back = store.load("h100-sxm", "", 1, "collective")  # default node of the SKU
    assert back.node == "hgx-h100"
    with pytest.raises(ConfigError, match="no attention_prefill profile for llama-2-70b"):
        store.load("h100-sxm", "llama-2-70b", 8, "attention_prefill")


def test_16bit_fallback_keeps_measured_dtype(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.save(frame("layer_ops"), meta_for("layer_ops", dtype="fp16"))
    _, meta = store.load("h100-sxm", "llama-2-70b", 8, "layer_ops")  # asks for bf16
    assert meta.dtype == "fp16"
    assert "layer_ops" in store.coverage("llama-2-70b", "h100-sxm", 8)
    assert store.coverage("llama-2-70b", "h100-sxm", 8, dtype="fp8") == {}


def test_load_rejects_a_misplaced_file(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    src = store.save(frame("attention_decode"), meta_for("attention_decode"))
    dst = tmp_path / "h100-sxm/llama-2-70b/tp4/attention_decode.parquet"
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(ConfigError, match="disagrees with its place"):
        store.load("h100-sxm", "llama-2-70b", 4, "attention_decode")


def test_coverage_and_require(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "profiles")
    assert store.coverage("llama-2-70b", "h100-sxm", 8) == {}
    store.save(frame("layer_ops"), meta_for("layer_ops"))
    store.save(frame("attention_decode"), meta_for("attention_decode"))
    cov = store.coverage("llama-2-70b", "h100-sxm", 8)
    assert set(cov) == {"layer_ops", "attention_decode"} and all(p.is_file() for p in cov.values())
    with pytest.raises(ConfigError) as err:
        store.require("llama-2-70b", "h100-sxm", 8)
    msg = str(err.value)
    assert "missing attention_prefill" in msg and "layer_ops" not in msg.split("under")[0]
    assert f"python -m profiler model=llama-2-70b tp=8 out={tmp_path / 'profiles'}" in msg
    assert "execution.kind=calibrated" in msg and "Shape-keyed" not in msg
    got = store.require("llama-2-70b", "h100-sxm", 8, families=("layer_ops", "attention_decode"))
    assert list(got) == ["layer_ops", "attention_decode"]
    with pytest.raises(ConfigError, match="families"):
        store.require("llama-2-70b", "h100-sxm", 8, families=("mlp",))
    with pytest.raises(ConfigError, match=r"missing collective.*node hgx-h100"):
        store.require("llama-2-70b", "h100-sxm", 8, families=("collective",))
    store.save(frame("collective"), meta_for("collective"))
    assert store.require("llama-2-70b", "h100-sxm", 8, families=("collective",)) == {
        "collective": tmp_path / "profiles/h100-sxm/network-hgx-h100/tp1/collective.parquet"}
    # a shape-keyed table covers attention only with rows of the model's heads per GPU
    shapes = meta_for("attention_prefill", model="", tp=1, model_shape={})
    store.save(frame("attention_prefill").assign(n_q_heads=32), shapes)
    with pytest.raises(ConfigError, match="hold no rows with llama-2-70b's heads at tp=8"):
        store.require("llama-2-70b", "h100-sxm", 8)
    store.save(frame("attention_prefill").assign(n_q_heads=8), shapes)
    got = store.require("llama-2-70b", "h100-sxm", 8)
    assert got["attention_prefill"] == store.path_for(shapes)


def test_shape_tables_filtered_for_a_model(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    df = pd.concat([frame("attention_decode"), frame("attention_decode").assign(n_q_heads=32)],
                   ignore_index=True)
    store.save(df, meta_for("attention_decode", model="", tp=1, model_shape={}))
    assert set(store.shape_tables("h100-sxm")) == {"attention_decode"}
    all_rows, _ = store.load_shapes("h100-sxm", "attention_decode")
    mine, _ = store.load_shapes("h100-sxm", "attention_decode", model="llama-2-70b", tp=8)
    assert len(all_rows) == 6 and len(mine) == 3 and set(mine["n_q_heads"]) == {8}


def test_entries_lists_every_file(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    assert store.entries().empty
    store.save(frame("layer_ops"), meta_for("layer_ops", dtype="fp16"))
    store.save(frame("collective", 5), meta_for("collective"))
    e = store.entries()
    assert list(e.columns) == ["device", "model", "node", "tp", "family", "dtype", "source",
                               "rows", "path"]
    assert sorted(zip(e["family"], e["rows"], e["dtype"], strict=True)) == [
        ("collective", 5, "bf16"), ("layer_ops", 3, "fp16")]
    (tmp_path / "stray.parquet").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"stray\.parquet"):
        store.entries()


# -- layer_ops shapes of every operator against the model a file claims ----------------------
# llama-2-70b at TP 8: q 8, kv 1 heads of 128, hidden 8192, ffn 28672 / 8, vocab 32000 / 8.
OP_SHAPES_70B_TP8 = {
    "embedding": (8192, 0), "input_norm": (8192, 0), "post_norm": (8192, 0), "add": (8192, 0),
    "rope": ((8 + 1) * 128, 0), "act": (3584, 0), "lm_head": (4000, 8192),
    "qkv_proj": (1280, 8192), "o_proj": (8192, 1024), "gate_up_proj": (7168, 8192),
    "down_proj": (8192, 3584),
}


def _ops_frame(ops: dict[str, tuple[int, int]], **extra: object) -> pd.DataFrame:
    names = list(ops)
    df = pd.DataFrame({"op": names, "num_tokens": 64, "n": [ops[o][0] for o in names],
                       "k": [ops[o][1] for o in names], **extra})
    return pd.concat([df, pd.DataFrame(stats(len(names)))], axis=1)


def test_every_layer_op_of_the_model_is_accepted(tmp_path: Path) -> None:
    path = write_profile(_ops_frame(OP_SHAPES_70B_TP8), tmp_path / "ok.parquet",
                         meta_for("layer_ops"))
    assert set(read_profile(path)[0]["op"]) == set(OP_SHAPES_70B_TP8)


# (op, column, wrong value, text of the expectation)
BAD_OP_SHAPES = [
    ("embedding", "n", 5, "n in [8192] for op embedding"),
    ("embedding", "k", 32000, "k in [0] for op embedding"),
    ("input_norm", "n", 5, "n in [8192] for op input_norm"),
    ("post_norm", "n", 4096, "n in [8192] for op post_norm"),
    ("add", "n", 5, "n in [8192] for op add"),
    ("add", "k", 8192, "k in [0] for op add"),
    ("rope", "n", 5, "n in [1152] for op rope"),
    ("act", "n", 7, "n in [3584] for op act"),
    ("act", "n", 7168, "n in [3584] for op act"),
    ("lm_head", "n", 123, "n in [4000] for op lm_head"),
    ("lm_head", "k", 1024, "k in [8192] for op lm_head"),
]


@pytest.mark.parametrize(("op", "col", "value", "text"), BAD_OP_SHAPES)
def test_wrong_layer_op_shape_names_file_column_row(tmp_path: Path, op: str, col: str,
                                                    value: int, text: str) -> None:
    df = _ops_frame(OP_SHAPES_70B_TP8)
    row = list(OP_SHAPES_70B_TP8).index(op)
    df.loc[row, col] = value
    path = tmp_path / "bad.parquet"
    with pytest.raises(ConfigError) as err:
        write_profile(df, path, meta_for("layer_ops"))
    msg = str(err.value)
    assert f"{path}: {col}[row {row}]={value}" in msg, msg
    assert f"model llama-2-70b at tp=8 needs {text}" in msg
    # the same rows fail on read, too (a file written by another tool)
    _raw_write(path, df, meta_for("layer_ops").to_json().encode())
    with pytest.raises(ConfigError, match=rf"bad\.parquet: {col}\[row {row}\]"):
        read_profile(path)


def test_lm_head_accepts_the_padded_vocabulary_shard(tmp_path: Path) -> None:
    # Llama-3: vocab 128256 (a multiple of 64): 16032 per GPU at TP 8, the only width
    shape = model_shape_of(get_model("llama-3-70b"))
    meta = meta_for("layer_ops", model="llama-3-70b", model_shape=shape)
    ok = {**OP_SHAPES_70B_TP8, "lm_head": (16032, 8192)}
    write_profile(_ops_frame(ok), tmp_path / "ok.parquet", meta)
    # a model outside the catalogue whose vocabulary 32001 neither TP nor 64 divides:
    # vocab // tp = 4000, ceil(vocab / tp) = 4001, vLLM's shard of 32064 / 8 = 4008
    odd = {**SHAPE_70B, "vocab": 32001}
    for n in (4000, 4001, 4008):
        df = _ops_frame({**OP_SHAPES_70B_TP8, "lm_head": (n, 8192)})
        write_profile(df, tmp_path / f"odd{n}.parquet",
                      meta_for("layer_ops", model="my-70b", model_shape=odd))
    df = _ops_frame({**OP_SHAPES_70B_TP8, "lm_head": (4002, 8192)})
    with pytest.raises(ConfigError, match=r"n\[row 6\]=4002.*n in \[4000, 4001, 4008\]"):
        write_profile(df, tmp_path / "bad.parquet",
                      meta_for("layer_ops", model="my-70b", model_shape=odd))


def test_moe_rows_in_a_dense_model_are_an_error(tmp_path: Path) -> None:
    df = _ops_frame({**OP_SHAPES_70B_TP8, "moe_experts": (3584, 8192)},
                    experts=[0] * 11 + [8], topk=[0] * 11 + [2])
    with pytest.raises(ConfigError) as err:
        write_profile(df, tmp_path / "bad.parquet", meta_for("layer_ops"))
    msg = str(err.value)
    assert "bad.parquet: op[row 11]='moe_experts'" in msg and "dense model" in msg, msg


MIXTRAL = get_model("mixtral-8x7b")  # 8 experts, top-2, expert FFN 14336, hidden 4096


@pytest.mark.parametrize(("col", "value", "text"), [
    (None, None, None),
    ("n", 14336, "n in [7168] for op moe_experts"),
    ("k", 7168, "k in [4096] for op moe_experts"),
    ("experts", 4, "experts=8 for op moe_experts"),
    ("topk", 1, "topk=2 for op moe_experts"),
])
def test_moe_rows_match_the_moe_model(tmp_path: Path, col: str | None, value: int | None,
                                      text: str | None) -> None:
    df = _ops_frame({"qkv_proj": ((16 + 2 * 4) * 128, 4096), "moe_experts": (7168, 4096),
                     "lm_head": (16000, 4096)}, experts=[0, 8, 0], topk=[0, 2, 0])
    meta = meta_for("layer_ops", model="mixtral-8x7b", tp=2,
                    model_shape=model_shape_of(MIXTRAL))
    if col is None:
        write_profile(df, tmp_path / "ok.parquet", meta)
        return
    df.loc[1, col] = value
    with pytest.raises(ConfigError) as err:
        write_profile(df, tmp_path / "bad.parquet", meta)
    assert f"bad.parquet: {col}[row 1]={value}" in str(err.value)
    assert f"model mixtral-8x7b at tp=2 needs {text}" in str(err.value)


def test_non_numeric_time_names_the_first_bad_row(tmp_path: Path) -> None:
    df = frame("attention_decode")
    df["median_us"] = pd.Series([11.0, 12.0, "abc"], dtype=object)
    with pytest.raises(ConfigError) as err:
        write_profile(df, tmp_path / "bad.parquet", meta_for("attention_decode"))
    assert "median_us[row 2]='abc'" in str(err.value)
    assert "must be a number (column dtype object)" in str(err.value)
    df["median_us"] = pd.Series([11.0, True, 12.0], dtype=object)
    with pytest.raises(ConfigError, match=r"median_us\[row 1\]=True"):
        write_profile(df, tmp_path / "bad.parquet", meta_for("attention_decode"))
    # an object column of real numbers only is read as numbers
    df["median_us"] = pd.Series([10, 11.0, np.float64(12.0)], dtype=object)
    back, _ = read_profile(write_profile(df, tmp_path / "ok.parquet",
                                         meta_for("attention_decode")))
    assert list(back["median_us"]) == [10.0, 11.0, 12.0]


def test_shipped_profiles_validate() -> None:
    root = Path(__file__).resolve().parents[1] / "simulator" / "profiles" / "data"
    paths = sorted(root.rglob("*.parquet"))
    assert paths, f"no shipped profiles under {root}"
    for path in paths:
        df, meta = read_profile(path)
        assert len(df) > 0 and meta.model


def test_every_importers_output_validates(reference_dir: Path, tmp_path: Path) -> None:
    from profiler.import_aiconfigurator import import_aiconfigurator
    from profiler.import_llmservingsim import import_llmservingsim
    from profiler.import_vidur import import_vidur

    written = [
        *import_vidur(reference_dir / "vidur", tmp_path / "vidur"),
        *import_aiconfigurator(reference_dir / "aiconfigurator", tmp_path / "aic"),
        *import_llmservingsim(reference_dir / "llmservingsim", tmp_path / "lss"),
    ]
    assert len(written) == len(list(tmp_path.rglob("*.parquet")))
    for item in written:
        df, _ = read_profile(item.path)  # every op's shape checked against its model
        assert len(df) == item.rows
