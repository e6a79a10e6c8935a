"""Request generators and trace readers: distributions, determinism, traces, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.errors import ConfigError
from simulator.workload import (
    ArrivalConfig,
    LengthConfig,
    RequestTable,
    WorkloadConfig,
    generate_requests,
    read_trace,
)


def gen(seed: int = 0, n: int = 20_000, **kw) -> RequestTable:
    arrival = ArrivalConfig(**kw.pop("arrival", {}))
    lengths = LengthConfig(**kw.pop("lengths", {}))
    cfg = WorkloadConfig(arrival=arrival, lengths=lengths, num_requests=n, **kw)
    return generate_requests(cfg, np.random.default_rng(seed))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- arrivals


def test_poisson_mean_interarrival() -> None:
    t = gen(arrival={"kind": "poisson", "rate": 4.0})
    assert len(t) == 20_000
    gaps = np.diff(np.concatenate([[0.0], t.arrival]))
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert t.arrival[0] > 0  # first request after the first gap
    assert np.all(np.diff(t.arrival) >= 0)


def test_gamma_cv() -> None:
    t = gen(arrival={"kind": "gamma", "rate": 2.0, "cv": 3.0}, seed=1)
    gaps = np.diff(np.concatenate([[0.0], t.arrival]))
    assert gaps.mean() == pytest.approx(0.5, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_static_all_zero() -> None:
    t = gen(arrival={"kind": "static"}, n=50)
    assert np.all(t.arrival == 0.0)


def test_same_seed_identical_different_seed_differs() -> None:
    kw = {"arrival": {"kind": "gamma", "cv": 2.0}, "lengths": {"kind": "uniform"}}
    a, b, c = gen(seed=7, **kw), gen(seed=7, **kw), gen(seed=8, **kw)
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())
    assert not np.array_equal(a.arrival, c.arrival)
    assert not np.array_equal(a.num_prefill, c.num_prefill)


def test_lengths_kind_does_not_change_arrivals() -> None:
    a = gen(seed=3, lengths={"kind": "fixed"})
    b = gen(seed=3, lengths={"kind": "zipf"})
    np.testing.assert_array_equal(a.arrival, b.arrival)


# --------------------------------------------------------------------------- lengths


def test_fixed_lengths() -> None:
    t = gen(n=10, lengths={"kind": "fixed", "prefill_tokens": 100, "decode_tokens": 7})
    assert np.all(t.num_prefill == 100) and np.all(t.num_decode == 7)
    assert t.num_prefill.dtype == np.int64 and t.arrival.dtype == np.float64


def test_uniform_bounds_inclusive() -> None:
    lengths = {"kind": "uniform", "min_prefill": 5, "max_prefill": 9, "min_decode": 1}
    t = gen(lengths={**lengths, "max_decode": 3})
    assert set(np.unique(t.num_prefill)) == {5, 6, 7, 8, 9}
    assert set(np.unique(t.num_decode)) == {1, 2, 3}


def test_zipf_bounds_and_decreasing_mass() -> None:
    lengths = {"kind": "zipf", "min_prefill": 10, "max_prefill": 60, "zipf_theta": 1.0}
    t = gen(lengths={**lengths, "min_decode": 2, "max_decode": 20})
    assert t.num_prefill.min() >= 10 and t.num_prefill.max() <= 60
    assert t.num_decode.min() >= 2 and t.num_decode.max() <= 20
    counts = np.bincount(t.num_prefill - 10, minlength=51)
    assert counts[0] > counts[1] > counts[10] > counts[50]
    # P(x) ∝ 1/(x - lo + 1): the lowest value is about twice as likely as the next
    assert counts[0] / counts[1] == pytest.approx(2.0, rel=0.15)


def test_max_total_tokens_truncation() -> None:
    lengths = {"kind": "uniform", "min_prefill": 1, "max_prefill": 300, "min_decode": 1}
    t = gen(lengths={**lengths, "max_decode": 300, "max_total_tokens": 200})
    assert np.all(t.num_prefill + t.num_decode <= 200)
    assert t.num_decode.min() >= 1 and t.num_prefill.max() == 199
    untouched = gen(lengths={**lengths, "max_decode": 300})  # same seed, same draws
    keep = untouched.num_prefill < 200
    np.testing.assert_array_equal(t.num_prefill[keep], untouched.num_prefill[keep])
    fixed = gen(n=3, lengths={"prefill_tokens": 150, "decode_tokens": 100, "max_total_tokens": 200})
    assert fixed.num_prefill.tolist() == [150] * 3 and fixed.num_decode.tolist() == [50] * 3


def test_million_requests_vectorised() -> None:
    t = gen(n=1_000_000, arrival={"kind": "gamma", "cv": 2.0}, lengths={"kind": "zipf"})
    assert len(t) == 1_000_000


# --------------------------------------------------------------------------- traces

VIDUR = "arrived_at,num_prefill_tokens,num_decode_tokens\n10.0,374,44\n12.5,396,109\n14.0,5,1\n"


def test_vidur_trace_replay(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", VIDUR)
    t = generate_requests(WorkloadConfig.replay(path), np.random.default_rng(0))
    np.testing.assert_allclose(t.arrival, [0.0, 2.5, 4.0])
    assert t.num_prefill.tolist() == [374, 396, 5] and t.num_decode.tolist() == [44, 109, 1]
    fast = generate_requests(WorkloadConfig.replay(path, time_scale=0.5), np.random.default_rng(0))
    np.testing.assert_allclose(fast.arrival, [0.0, 1.25, 2.0])
    first2 = generate_requests(
        WorkloadConfig.replay(path, num_requests=2), np.random.default_rng(0)
    )
    assert len(first2) == 2


def test_replay_more_rows_than_trace_is_error(tmp_path: Path) -> None:
    cfg = WorkloadConfig.replay(write_csv(tmp_path / "t.csv", VIDUR), num_requests=5)
    with pytest.raises(ConfigError, match=r"workload\.num_requests=5.*at most 3"):
        generate_requests(cfg, np.random.default_rng(0))


def test_parquet_plain_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    df = pd.DataFrame(
        {"arrival_time": [1.0, 2.0, 4.0], "prompt_tokens": [10, 20, 30], "output_tokens": [1, 2, 3]}
    )
    df.to_parquet(path)
    t = generate_requests(WorkloadConfig.replay(path), np.random.default_rng(0))
    np.testing.assert_allclose(t.arrival, [0.0, 1.0, 3.0])
    assert t.num_prefill.tolist() == [10, 20, 30] and t.num_decode.tolist() == [1, 2, 3]


def test_explicit_column_names(tmp_path: Path) -> None:
    path = tmp_path / "t.pq"
    pd.DataFrame(
        {"t": [0.0, 1.0], "ins": [7, 8], "outs": [3, 4], "prompt_tokens": [1, 1]}
    ).to_parquet(path)
    cfg = WorkloadConfig(
        arrival=ArrivalConfig(kind="trace"),
        lengths=LengthConfig(kind="trace"),
        num_requests=0,
        trace_file=str(path),
        trace_format="columns",
        arrival_column="t",
        prefill_column="ins",
        decode_column="outs",
    )
    t = generate_requests(cfg, np.random.default_rng(0))
    assert t.num_prefill.tolist() == [7, 8] and t.num_decode.tolist() == [3, 4]
    df = read_trace(path, prefill_column="ins", decode_column="outs", need_arrival=False)
    assert list(df.columns) == ["num_prefill_tokens", "num_decode_tokens"]


def test_trace_lengths_with_poisson_arrivals(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "prompt_len,output_len\n1,2\n3,4\n5,6\n")
    lengths = LengthConfig(kind="trace")
    cfg = WorkloadConfig(lengths=lengths, num_requests=2, trace_file=str(path))
    t = generate_requests(cfg, np.random.default_rng(0))
    assert t.num_prefill.tolist() == [1, 3] and t.num_decode.tolist() == [2, 4]  # first rows
    cfg = WorkloadConfig(lengths=lengths, num_requests=50, trace_file=str(path))
    a = generate_requests(cfg, np.random.default_rng(0))
    b = generate_requests(cfg, np.random.default_rng(0))
    assert set(a.num_prefill.tolist()) == {1, 3, 5}  # sampled with replacement
    np.testing.assert_array_equal(a.num_decode, a.num_prefill + 1)  # rows stay whole
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workload\.trace_file.*file does not exist") as e:
        WorkloadConfig.replay(tmp_path / "nope.csv")
    assert "nope.csv" in str(e.value)


def test_trace_kind_needs_trace_file() -> None:
    with pytest.raises(ConfigError, match=r"workload\.trace_file=None"):
        WorkloadConfig(lengths=LengthConfig(kind="trace"))


def test_missing_column_names_it_and_lists_present(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "num_prefill_tokens,num_decode_tokens,pd_ratio\n1,2,0.5\n")
    with pytest.raises(ConfigError) as e:
        WorkloadConfig.replay(path)
    msg = str(e.value)
    assert "arrived_at" in msg and "arrival_time" in msg  # what was looked for
    assert "the file has columns: num_prefill_tokens, num_decode_tokens, pd_ratio" in msg
    assert str(path) in msg
    with pytest.raises(ConfigError, match=r"'ins', from workload\.prefill_column"):
        WorkloadConfig(
            lengths=LengthConfig(kind="trace"), trace_file=str(path), prefill_column="ins"
        )


def test_negative_rate() -> None:
    with pytest.raises(ConfigError, match=r"workload\.arrival\.rate=-1\.0.*> 0"):
        ArrivalConfig(rate=-1.0)


def test_unknown_kind_lists_allowed() -> None:
    with pytest.raises(
        ConfigError, match=r"workload\.arrival\.kind='bursty'.*gamma, poisson, static"
    ):
        ArrivalConfig(kind="bursty")
    with pytest.raises(
        ConfigError, match=r"workload\.lengths\.kind='normal'.*fixed, trace, uniform"
    ):
        LengthConfig(kind="normal")


def test_min_greater_than_max() -> None:
    with pytest.raises(ConfigError, match=r"workload\.lengths\.min_decode=600.*max_decode \(512\)"):
        LengthConfig(min_decode=600)


def test_zero_prompt_tokens_names_row(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,1\n1,0,1\n"
    )
    cfg = WorkloadConfig.replay(path)  # header is fine
    with pytest.raises(
        ConfigError, match=r"column 'num_prefill_tokens', row 1.*=0 .*integers >= 1"
    ):
        generate_requests(cfg, np.random.default_rng(0))


def test_decreasing_timestamps(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,1\n3,5,1\n2,5,1\n"
    )
    with pytest.raises(ConfigError, match=r"column 'arrived_at', row 2.*non-decreasing"):
        read_trace(path, need_arrival=True)


def test_from_dict_builds_nested_and_rejects_unknown_keys() -> None:
    cfg = WorkloadConfig.from_dict(
        {"arrival": {"kind": "gamma", "cv": 2.0}, "lengths": {"kind": "zipf"}, "num_requests": 5}
    )
    assert cfg.arrival.cv == 2.0 and cfg.lengths.kind == "zipf" and cfg.num_requests == 5
    with pytest.raises(
        ConfigError, match=r"workload\.num_request=.*allowed keys are arrival, lengths"
    ):
        WorkloadConfig.from_dict({"num_request": 5})
    with pytest.raises(ConfigError, match=r"workload\.lengths\.max_tokens=.*max_total_tokens"):
        WorkloadConfig.from_dict({"lengths": {"max_tokens": 5}})


def test_num_requests_zero_only_with_trace() -> None:
    with pytest.raises(ConfigError, match=r"workload\.num_requests=0.*>= 1"):
        WorkloadConfig(num_requests=0)


# --------------------------------------------------------------------------- reference traces


def traces_dir(reference_dir: Path) -> Path:
    path = reference_dir / "vidur" / "processed_traces"
    if not path.is_dir():
        pytest.skip(f"../shared/reference is absent: {path} not found")
    return path


def test_reference_splitwise_conv_replay(reference_dir: Path) -> None:
    cfg = WorkloadConfig.replay(traces_dir(reference_dir) / "splitwise_conv.csv")
    t = generate_requests(cfg, np.random.default_rng(0))
    assert len(t) == 19366
    assert (t.arrival[0], t.num_prefill[0], t.num_decode[0]) == (0.0, 374, 44)


def test_reference_arxiv_lengths_with_poisson(reference_dir: Path) -> None:
    path = traces_dir(reference_dir) / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    cfg = WorkloadConfig(
        arrival=ArrivalConfig(kind="poisson", rate=2.0),
        lengths=LengthConfig(kind="trace"),
        num_requests=1000,
        trace_file=str(path),
    )
    t = generate_requests(cfg, np.random.default_rng(0))
    expected = pd.read_csv(path, nrows=1000)
    np.testing.assert_array_equal(t.num_prefill, expected["num_prefill_tokens"])
    np.testing.assert_array_equal(t.num_decode, expected["num_decode_tokens"])
    assert len(t) == 1000 and t.arrival[0] > 0
