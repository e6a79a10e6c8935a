"""Bad input to the side tools (validate, the profiler, the three importers): a clear
error naming the field or the source file, before any work, and nothing lost or half
written. One test per failure the CLI audit found."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler import run as profiler_run
from profiler.import_aiconfigurator import FILES, import_aiconfigurator
from profiler.import_aiconfigurator import main as aic_main
from profiler.import_llmservingsim import import_llmservingsim
from profiler.import_llmservingsim import main as lss_main
from profiler.import_vidur import OP_NAMES, import_vidur
from profiler.run import parse_args
from simulator.errors import ConfigError
from simulator.profiles import ProfileStore
from vidur_search.bench_formats import read_bench


def _parquets(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet")) if root.exists() else []


# --------------------------------------------------------------------------- validate


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidur_search.validate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _bench_csv(path: Path) -> Path:
    rows = [(0.5 * i, 200, 50, 0.05, 0.6) for i in range(6)]
    pd.DataFrame(rows, columns=["arrival_time", "input_tokens", "output_tokens", "ttft",
                                "e2e"]).to_csv(path, index=False)
    return path


def test_validate_unwritable_output_json_is_refused_before_simulating(tmp_path: Path) -> None:
    bench = _bench_csv(tmp_path / "bench.csv")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (tmp_path, afile / "x.json"):  # a directory; under a file
        p = _validate(f"bench={bench}", "model=llama-3-8b", "sku=h100-sxm",
                      f"output.json={out}", cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("configuration error: output.json=") and "Traceback" \
            not in p.stderr
        assert "TTFT" not in p.stdout  # nothing was simulated


def test_validate_rejects_unknown_keys(tmp_path: Path) -> None:
    bench = _bench_csv(tmp_path / "bench.csv")
    p = _validate(f"bench={bench}", "model=llama-3-8b", "sku=h100-sxm", "+bogus=1",
                  cwd=tmp_path)
    assert p.returncode == 2
    assert "bogus=1 is invalid: unknown key; allowed keys:" in p.stderr
    assert "bench" in p.stderr and "output" in p.stderr


def test_vllm_bench_lists_of_different_lengths_say_which(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"input_lens": [200] * 3, "output_lens": [50] * 4,
                                "ttfts": [0.05] * 4, "e2els": [0.6] * 4}))
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    msg = str(err.value)
    assert "input_lens has 3 entries, output_lens has 4" in msg
    assert "'list'" not in msg


# --------------------------------------------------------------------------- profiler


def test_profiler_checks_out_before_measuring(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        lines: list[str] = []
        cfg = parse_args(["model=llama-3-8b", f"out={out}", "progress=false"])
        with pytest.raises(ConfigError) as err:
            profiler_run.run(cfg, echo=lines.append)
        assert err.value.field == "out" and lines == []  # nothing planned or measured
    assert profiler_run.main(["model=llama-3-8b", f"out={afile}"]) == 2


def test_profiler_keeps_measurements_a_failed_write_would_lose(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    seen_before_decode: list[bool] = []
    save = ProfileStore.save

    def failing_save(self: ProfileStore, df: pd.DataFrame, meta: object) -> Path:
        if self.root == out and meta.family == "attention_decode":  # type: ignore[attr-defined]
            # the prefill file is on disk already: each family is saved once measured
            seen_before_decode.append(bool(_parquets(out)))
            raise OSError(28, "No space left on device", str(out))
        return save(self, df, meta)  # type: ignore[arg-type]

    monkeypatch.setattr(ProfileStore, "save", failing_save)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the rescue directory's parent
    lines: list[str] = []
    cfg = parse_args(["model=llama-3-8b", f"out={out}", "progress=false", "tokens_max=16",
                      "batch_max=2", "kv_max=32"])
    with pytest.raises(profiler_run.SaveFailed, match="No space left on device") as err:
        profiler_run.run(cfg, echo=lines.append)
    assert seen_before_decode == [True]
    assert [p.name for p in _parquets(out)] == ["attention_prefill.parquet",
                                                "layer_ops.parquet"]
    rescued = [Path(p) for p in str(err.value).split() if "vidur_profiler_rescue_" in p]
    assert Path(rescued[0]).parent == tmp_path
    kept = _parquets(Path(rescued[0]))
    assert [p.name for p in kept] == ["attention_decode.parquet"]
    assert any("are kept in" in ln for ln in lines)


@pytest.mark.parametrize(("args", "field"), [
    (["sku=bogus"], "sku"),
    (["node=bogus"], "node"),
    (["dry_run=true", "plan_for=h100-sxm", "node=bogus"], "node"),
    (["dry_run=true", "plan_for=h100-sxm", "node=dgx-a100"], "node"),
    (["families="], "families"),
])
def test_profiler_names_are_checked_against_the_catalogue(args: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_args(["model=llama-3-8b", *args])
    assert err.value.field == field
    assert "allowed values are" in str(err.value) or "nodes for h100-sxm" in str(err.value)


def test_a_cpu_run_takes_any_node_label() -> None:
    """On the CPU the node is only a label of the collective files (default ``cpu``)."""
    for args in (["node=cpu"], ["device=cpu", "node=my-laptop"]):
        parse_args(["model=llama-3-8b", *args])


# --------------------------------------------------------------------------- importers


def _vidur_mlp(path: Path, emb_mean_ms: float = 0.02) -> None:
    """A Vidur-layout mlp.csv for Llama-2-7B at TP 1, three token counts."""
    df = pd.DataFrame({"n_head": 32, "n_kv_head": 32, "n_embd": 4096,
                       "n_expanded_embd": 11008, "use_gated_mlp": True,
                       "num_tokens": [1, 8, 64], "num_tensor_parallel_workers": 1})
    for op in OP_NAMES:
        t = 0.02 + 0.01 * np.arange(3)
        for stat, f in (("min", 0.9), ("max", 1.2), ("mean", 1.0), ("median", 1.0)):
            df[f"time_stats.{op}.{stat}"] = t * f
        df[f"time_stats.{op}.std"] = 0.001
    df.loc[1, "time_stats.emb.mean"] = emb_mean_ms
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


VIDUR_MLP = "profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv"


def _lss(root: Path, model: str = "meta-llama/Llama-3.1-8B", time_us: float = 1.0) -> Path:
    """An LLMServingSim tree with one dense.csv (row 2 holds ``time_us``)."""
    src = root / "perf" / "RTX4090" / model / "bf16"
    (src / "tp1").mkdir(parents=True)
    (src / "meta.yaml").write_text("tp_degrees: [1]\nmeasurement_iterations: 3\n")
    rows = [(layer, t, 1.0 + t) for layer in ("embedding", "layernorm", "qkv_proj")
            for t in (1, 2)]
    df = pd.DataFrame(rows, columns=["layer", "tokens", "time_us"])
    df.loc[2, "time_us"] = time_us
    df.to_csv(src / "tp1/dense.csv", index=False)
    return src


def _aic_system(root: Path, m: object = (1, 2)) -> Path:
    """An aiconfigurator system directory: context attention (fine) and GEMM rows."""
    sys_dir = root / "h100_sxm"
    ctx = pd.DataFrame({"batch_size": [1, 2], "isl": [128, 256], "num_heads": 32,
                        "num_key_value_heads": 8, "head_dim": 128, "step": 0,
                        "attn_dtype": "bfloat16", "kv_cache_dtype": "bfloat16",
                        "kernel_source": "k", "latency": [0.1, 0.2]})
    gemm = pd.DataFrame({"gemm_dtype": "bfloat16", "m": list(m), "n": 4096, "k": 4096,
                         "kernel_source": "k", "latency": [0.01, 0.02]})
    for kind, df in (("context", ctx), ("gemm", gemm)):
        (sys_dir / FILES[kind]).parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(sys_dir / FILES[kind])
    return sys_dir


def test_unreadable_sources_and_dest_files_are_clean_errors(tmp_path: Path) -> None:
    empty = tmp_path / "v" / VIDUR_MLP
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty") as err:
        import_vidur(tmp_path / "v", tmp_path / "o1")
    assert str(empty) in str(err.value)

    src = _lss(tmp_path / "l1")
    (src / "tp1/dense.csv").write_text("")
    with pytest.raises(ConfigError, match=r"dense\.csv' is invalid: is empty"):
        import_llmservingsim(tmp_path / "l1", tmp_path / "o2")
    src = _lss(tmp_path / "l2")
    (src / "meta.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"meta\.yaml' is invalid: cannot be read as YAML"):
        import_llmservingsim(tmp_path / "l2", tmp_path / "o3")

    sys_dir = _aic_system(tmp_path / "a")
    (sys_dir / FILES["gemm"]).write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match=r"gemm_perf\.parquet' is invalid: cannot be read"):
        import_aiconfigurator(tmp_path / "a", tmp_path / "o4")

    afile = tmp_path / "afile"
    afile.write_text("x")
    _vidur_mlp(tmp_path / "v2" / VIDUR_MLP)
    _aic_system(tmp_path / "a2")
    _lss(tmp_path / "l3")
    for do in (lambda: import_vidur(tmp_path / "v2", afile),
               lambda: import_aiconfigurator(tmp_path / "a2", afile),
               lambda: import_llmservingsim(tmp_path / "l3", afile)):
        with pytest.raises(ConfigError) as err:
            do()
        assert err.value.field == "DEST" and "not a directory" in str(err.value)


def test_aiconfigurator_writes_nothing_when_a_later_table_is_bad(tmp_path: Path) -> None:
    _aic_system(tmp_path / "src", m=("32768", "1"))  # attention fine, GEMM m not numbers
    dest = tmp_path / "dest"
    with pytest.raises(ConfigError, match=r"m\[row 0"):
        import_aiconfigurator(tmp_path / "src", dest)
    assert _parquets(dest) == []


def test_errors_name_the_source_file_column_and_row(tmp_path: Path) -> None:
    csv = tmp_path / VIDUR_MLP
    _vidur_mlp(csv, emb_mean_ms=-5.0)
    with pytest.raises(ConfigError) as err:
        import_vidur(tmp_path / "profiling", tmp_path / "store")
    assert str(err.value).startswith(f"{csv}: time_stats.emb.mean[row 1]=-5.0 is invalid")
    _aic_system(tmp_path / "src", m=("32768", "1"))
    with pytest.raises(ConfigError) as err:
        import_aiconfigurator(tmp_path / "src", tmp_path / "store2")
    msg = str(err.value)
    assert "m[row 0 of gemm/gemm_perf.parquet]='32768'" in msg and "num_tokens" not in msg
    assert "store2" not in msg


def test_importing_nothing_is_an_error_that_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _lss(tmp_path / "l", model="meta-llama/Foo-9B")
    assert lss_main([str(tmp_path / "l"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nothing to import" in err and "'meta-llama/Foo-9B'" in err
    assert "known models: " in err and "llama-3.1-8b" in err and "--alias" in err
    _aic_system(tmp_path / "a")
    assert aic_main(["--dtypes", "", str(tmp_path / "a"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "--dtypes=''" in err and "bf16, fp8" in err
    assert _parquets(tmp_path / "o") == [] and _parquets(tmp_path / "o2") == []


def test_llmservingsim_values_read_as_plain_numbers(tmp_path: Path) -> None:
    _lss(tmp_path, time_us=-3.0)
    with pytest.raises(ConfigError) as err:
        import_llmservingsim(tmp_path / "perf", tmp_path / "store")
    msg = str(err.value)
    assert "dense.csv: time_us[row 2]=-3.0 is invalid" in msg and "np." not in msg


def test_an_import_into_a_store_with_a_file_in_a_folder_place_writes_nothing(
        tmp_path: Path) -> None:
    """A file where one of the store's folders belongs is found before anything is
    written, and a store lists no file of an interrupted import's scratch folder."""
    from simulator.profiles import ProfileStore

    src = tmp_path / "src"
    _vidur_mlp(src / VIDUR_MLP)
    dest = tmp_path / "dest"
    (dest / "h100-sxm").mkdir(parents=True)
    (dest / "h100-sxm" / "llama-2-7b").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file where the folder"):
        import_vidur(src, dest)
    assert sorted(p.name for p in dest.rglob("*")) == ["h100-sxm", "llama-2-7b"]
    good = tmp_path / "good"
    import_vidur(src, good)
    listed = len(ProfileStore(good).entries())
    scratch = good / ".import-left-over"
    scratch.mkdir()
    for f in good.rglob("*.parquet"):
        if scratch not in f.parents:
            (scratch / f.name).write_bytes(f.read_bytes())
    assert len(ProfileStore(good).entries()) == listed
