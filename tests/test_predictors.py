"""Operator-time predictors, their disk cache, lookup tables and the profiled model."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.catalogue import default_node_for, get_model, load_catalogue
from simulator.errors import ConfigError
from simulator.execution.predictors import (
    ForestPredictor,
    PiecewiseLinearPredictor,
    PredictorParams,
    fit_profile,
    select,
)
from simulator.execution.predictors.cache import ENV_VAR, PredictorCache, default_cache_dir
from simulator.execution.predictors.tables import (
    OctaveAxis,
    OctaveTable,
    SparseRowTable,
    TokenTable,
    integer_points,
)
from simulator.execution.profiled import ProfiledModel, ProfiledParams
from simulator.execution.roofline import RooflineModel
from simulator.metrics.summary import format_summary
from simulator.profiles import ProfileMeta, ProfileStore, model_shape_of

MODEL, SKU, TP = "llama-2-7b", "a100-80gb", 1
# llama-2-7b at TP 1: per-GPU (n, k) of each operator, and a synthetic cost per token (us)
OPS = {
    "embedding": (4096, 0, 0.004), "input_norm": (4096, 0, 0.003), "qkv_proj": (12288, 4096, 0.05),
    "rope": (8192, 0, 0.004), "o_proj": (4096, 4096, 0.02), "post_norm": (4096, 0, 0.003),
    "gate_up_proj": (22016, 4096, 0.09), "act": (11008, 0, 0.006),
    "down_proj": (4096, 11008, 0.045), "add": (4096, 0, 0.002),
}
TOKENS = np.arange(1, 2049, 16)
FAST = PredictorParams(n_estimators=4, base=(False,), cv_folds=2, max_cv_rows=500)
PARAMS = dict(n_estimators=4, base=(False,), cv_folds=2, max_cv_rows=500, dense_tokens=512,
              tokens_per_octave=32, axis_per_octave=8, batch_dense=16)


def layer_ops_frame(scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A synthetic layer_ops table of llama-2-7b (time = 6 us + per-token cost, 1% noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for op, (n, k, per_tok) in OPS.items():
        t = (6.0 + per_tok * TOKENS) * scale * (1 + 0.01 * rng.standard_normal(len(TOKENS)))
        rows.append(pd.DataFrame({"op": op, "num_tokens": TOKENS, "n": n, "k": k,
                                  "min_us": t * 0.98, "median_us": t, "mean_us": t,
                                  "max_us": t * 1.02, "std_us": 0.01 * t, "count": 20}))
    return pd.concat(rows, ignore_index=True)


def decode_frame() -> pd.DataFrame:
    """Synthetic attention_decode rows of llama-2-7b at TP 1: batch 1..32, KV 16..2048."""
    B, L = np.meshgrid([1, 2, 4, 8, 16, 32], 2 ** np.arange(4, 12))
    B, L = B.ravel(), L.ravel()
    t = 8.0 + 0.2 * B + 2e-3 * B * L
    return pd.DataFrame({"n_q_heads": 32, "n_kv_heads": 32, "head_dim": 128, "batch_size": B,
                         "kv_len": L, "min_us": t, "median_us": t, "mean_us": t, "max_us": t,
                         "std_us": 0.0, "count": 1})


LAYER_SOURCE = "measured layer_ops (a100-80gb/llama-2-7b/tp1, bf16)"


def meta(family: str) -> ProfileMeta:
    return ProfileMeta(family=family, source="measured", device=SKU, model=MODEL, tp=TP,
                       model_shape=model_shape_of(get_model(MODEL)), origin=f"test:{family}")


@pytest.fixture
def store(tmp_path: Path) -> ProfileStore:
    s = ProfileStore(tmp_path / "profiles")
    s.save(layer_ops_frame(), meta("layer_ops"))
    return s


def profiled(store: ProfileStore, cache_dir: Path, pp: int = 1, **kw: object) -> ProfiledModel:
    cat = load_catalogue()
    params = ProfiledParams(store=str(store.root), cache_dir=str(cache_dir), **PARAMS)
    return ProfiledModel(get_model(MODEL), cat.sku(SKU), cat.node(default_node_for(SKU)), TP,
                         pp, params, max_batch=64, **kw)


def ape(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(pred / y - 1) * 100


# ---------------------------------------------------------------------- predictors
def test_fit_small_profile_predicts_held_out_rows() -> None:
    df = layer_ops_frame()
    train = df[df["num_tokens"] % 32 != 17]  # every other token count held out
    test = df[df["num_tokens"] % 32 == 17]
    fitted = fit_profile(train, "layer_ops", FAST)
    assert set(fitted) == set(OPS)
    for op, res in fitted.items():
        rows = test[test["op"] == op]
        err = ape(res.predict(rows[["num_tokens", "n", "k"]]), rows["median_us"].to_numpy())
        assert np.median(err) < 3, op
        assert res.ranges["num_tokens"] == (1.0, 2017.0)


def test_predictors_extrapolate_along_the_base() -> None:
    x = np.arange(1, 4097, 8)
    X = pd.DataFrame({"num_tokens": x, "n": 4096, "k": 4096})
    y = 5.0 + 0.02 * x
    lo = x < 3000
    for pred in (PiecewiseLinearPredictor(), ForestPredictor(n_estimators=4)):
        p = pred.fit(X[lo], y[lo]).predict(X[~lo])
        assert np.median(ape(p, y[~lo])) < 3, type(pred).__name__


def test_moe_rows_are_fitted_on_the_experts_their_tokens_touch() -> None:
    """A MoE layer reads the weights of the experts its routed tokens touch (which grows
    with the tokens until every expert is hit), then computes on the routed tokens: its
    own family (experts and top-k as features) follows that beyond the fitted tokens;
    the GEMM features of the other layer_ops rows (one weight matrix) cannot."""
    from simulator.execution.predictors import fit_profile
    from simulator.execution.predictors.features import touched_experts

    T = np.unique(np.round(np.geomspace(1, 16384, 40)))
    E, K, n, k = 64, 4, 1536, 2048
    t = 4.0 + 0.002 * touched_experts(T, E, K) * n * k / 1e3 + 2e-7 * T * K * n * k / 1e3
    moe = pd.DataFrame({"op": "moe_experts", "num_tokens": T, "n": n, "k": k, "experts": E,
                        "topk": K, "median_us": t})
    dense = pd.DataFrame({"op": "o_proj", "num_tokens": T, "n": 4096, "k": 4096, "experts": 0,
                          "topk": 0, "median_us": 3.0 + 0.01 * T})
    lo = T <= 2048
    got = fit_profile(pd.concat([moe[lo], dense], ignore_index=True), "layer_ops", FAST)
    assert got["moe_experts"].predictor.family == "moe_experts"
    assert got["o_proj"].predictor.family == "layer_ops"
    pred = got["moe_experts"].predict(moe[~lo][["num_tokens", "n", "k", "experts", "topk"]])
    assert np.median(ape(pred, t[~lo])) < 5
    assert touched_experts(np.array([1.0]), np.array([64.0]), np.array([4.0]))[0] == \
        pytest.approx(4.0)
    assert touched_experts(np.array([1e5]), np.array([64.0]), np.array([4.0]))[0] == \
        pytest.approx(64.0)


def decode_two_head_shapes() -> pd.DataFrame:
    """Decode attention that is flat until the (sequence, KV head) pairs fill a GPU of
    132 SMs, then linear in them: one KV head (GQA) and eight, batches 1..1024."""
    rows = []
    for q, kv in ((8, 1), (64, 8)):
        B, L = np.meshgrid(2 ** np.arange(0, 11), 2 ** np.arange(4, 13))
        B, L = B.ravel(), L.ravel()
        t = 8.0 + 0.03 * np.maximum(B * kv, 132) * (1 + L / 1024)
        rows.append(pd.DataFrame({"n_q_heads": q, "n_kv_heads": kv, "head_dim": 128,
                                  "batch_size": B, "kv_len": L, "median_us": t}))
    return pd.concat(rows, ignore_index=True)


def test_decode_forest_extrapolates_batch_by_work_items() -> None:
    # batches beyond 128 with one KV head have as many work items as measured batches
    # with eight: the forest on the base's residual carries that shape's saturated time
    df = decode_two_head_shapes()
    cols = ["n_q_heads", "n_kv_heads", "head_dim", "batch_size", "kv_len"]
    train = df[df["batch_size"] <= 128]
    test = df[(df["batch_size"] > 128) & (df["n_kv_heads"] == 1)]
    pred = ForestPredictor("attention_decode", n_estimators=8, base=True)
    p = pred.fit(train[cols], train["median_us"].to_numpy()).predict(test[cols])
    assert np.median(ape(p, test["median_us"].to_numpy())) < 5


def collective_frame(dense: bool = False, bump: float = 1.0) -> pd.DataFrame:
    """All-reduce over 2 and 8 GPUs: 6 us + size / bandwidth at sizes 2**9..2**29 bytes
    (``dense``: every 8 KiB from 2 KiB to 1 MiB, as Vidur's); ``bump`` multiplies the
    time at the 50th size (an outlier)."""
    s = 2048.0 + 8192 * np.arange(128) if dense else 2.0 ** np.arange(9, 30)
    rows = []
    for n, bw in ((2, 150e3), (8, 120e3)):  # bytes per us
        t = 6.0 + s / bw * np.where(np.arange(len(s)) == 50, bump, 1.0)
        rows.append(pd.DataFrame({"num_gpus": n, "gpus_per_node": n, "size_bytes": s,
                                  "median_us": t}))
    return pd.concat(rows, ignore_index=True)


def test_piecewise_linear_interpolation_follows_latency_plus_bandwidth() -> None:
    # knots a factor of 4 apart: time linear in size is exact, log-log is not
    df = collective_frame()
    cols = ["num_gpus", "gpus_per_node", "size_bytes"]
    odd = np.log2(df["size_bytes"]).astype(int) % 2 == 1
    errs = {}
    for interp in ("log", "linear"):
        pred = PiecewiseLinearPredictor("collective", interp=interp)
        p = pred.fit(df[~odd][cols], df[~odd]["median_us"].to_numpy()).predict(df[odd][cols])
        errs[interp] = ape(p, df[odd]["median_us"].to_numpy()).max()
    assert errs["linear"] < 0.1 < 5 < errs["log"]  # 0.1: the size below the first knot


def test_piecewise_smoothing_removes_an_isolated_outlier() -> None:
    # dense sizes (neighbouring knots 8 KiB apart), one knot measured at 3 times its time
    df = collective_frame(dense=True, bump=3.0)
    cols = ["num_gpus", "gpus_per_node", "size_bytes"]
    # between the outlier and its neighbours, over 2 GPUs
    s50 = 2048.0 + 8192 * 50
    near = pd.DataFrame({"num_gpus": 2, "gpus_per_node": 2,
                         "size_bytes": [s50 - 4096, s50, s50 + 4096]})
    truth = 6.0 + near["size_bytes"].to_numpy() / 150e3
    for smooth, ok in ((1, False), (3, True)):
        pred = PiecewiseLinearPredictor("collective", interp="linear", smooth=smooth)
        p = pred.fit(df[cols], df["median_us"].to_numpy()).predict(near)
        assert (ape(p, truth).max() < 2) == ok, smooth
    with pytest.raises(ConfigError, match="smooth"):
        PiecewiseLinearPredictor("collective", smooth=0).fit(df[cols], df["median_us"])
    with pytest.raises(ConfigError, match="interp"):
        PiecewiseLinearPredictor("collective", interp="cubic").fit(df[cols], df["median_us"])


def test_small_tables_get_more_cv_folds() -> None:
    params = PredictorParams()
    assert (params.folds(50), params.folds(5000)) == (10, 3)
    assert len(params.candidates("collective")) == 6  # 4 piecewise + 2 forests
    with pytest.raises(ConfigError, match="small_folds"):
        PredictorParams(small_folds=1)
    with pytest.raises(ConfigError, match="interp"):
        PredictorParams(interp=("spline",))


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(ConfigError, match="fit"):
        ForestPredictor().predict(pd.DataFrame({"num_tokens": [1], "n": [1], "k": [1]}))


def test_grid_search_prefers_the_cheap_model_when_as_accurate() -> None:
    x = np.arange(1, 2049, 4)
    X = pd.DataFrame({"num_tokens": x, "n": 4096, "k": 0})
    res = select(X, 3.0 + 0.01 * x, "layer_ops", FAST)  # smooth: interpolation is exact
    assert isinstance(res.predictor, PiecewiseLinearPredictor)
    assert len(res.scores) == 5  # log/linear x smoothed or not, and one forest


# ---------------------------------------------------------------------- cache
def test_cache_hit_returns_the_same_predictions_without_refitting(tmp_path: Path) -> None:
    df = layer_ops_frame()
    ident = {"device": SKU, "model": MODEL, "tp": TP, "dtype": "bf16", "node": ""}
    X = pd.DataFrame({"num_tokens": [3, 700, 1999], "n": 4096, "k": 4096})
    first = PredictorCache(tmp_path)
    a = first.fitted(ident, df, "layer_ops", FAST)["o_proj"].predict(X)
    second = PredictorCache(tmp_path)
    b = second.fitted(ident, df, "layer_ops", FAST)["o_proj"].predict(X)
    assert (first.fits, first.hits) == (1, 0)
    assert (second.fits, second.hits) == (0, 1)
    np.testing.assert_array_equal(a, b)


def test_changed_profile_or_hyper_parameters_refit(tmp_path: Path) -> None:
    ident = {"device": SKU, "model": MODEL, "tp": TP, "dtype": "bf16", "node": ""}
    cache = PredictorCache(tmp_path)
    cache.fitted(ident, layer_ops_frame(), "layer_ops", FAST)
    cache.fitted(ident, layer_ops_frame(scale=1.5), "layer_ops", FAST)
    cache.fitted(ident, layer_ops_frame(), "layer_ops", PredictorParams(
        n_estimators=5, base=(False,), cv_folds=2, max_cv_rows=500))
    assert (cache.fits, cache.hits) == (3, 0)
    assert len(list(cache.directory.glob("*.joblib"))) == 3
    cache.fitted(ident, layer_ops_frame(scale=1.5), "layer_ops", FAST)
    assert cache.hits == 1


def test_fit_version_is_part_of_the_cache_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # a change of the fitting code (a new FIT_VERSION) must not load older fits
    from simulator.execution.predictors import cache as cache_mod

    ident = {"device": SKU, "model": MODEL, "tp": TP, "dtype": "bf16", "node": ""}
    cache = PredictorCache(tmp_path)
    cache.fitted(ident, layer_ops_frame(), "layer_ops", FAST)
    monkeypatch.setattr(cache_mod, "FIT_VERSION", cache_mod.FIT_VERSION + 1)
    cache.fitted(ident, layer_ops_frame(), "layer_ops", FAST)
    assert (cache.fits, cache.hits) == (2, 0)


def test_corrupt_cache_entry_warns_and_refits(tmp_path: Path) -> None:
    ident = {"device": SKU, "model": MODEL, "tp": TP, "dtype": "bf16", "node": ""}
    df = layer_ops_frame()
    cache = PredictorCache(tmp_path)
    cache.fitted(ident, df, "layer_ops", FAST)
    (path,) = cache.directory.glob("*.joblib")
    path.write_bytes(b"not a joblib file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        res = cache.fitted(ident, df, "layer_ops", FAST)
    assert (cache.fits, cache.errors) == (2, 1)
    assert res["qkv_proj"].predict(pd.DataFrame({"num_tokens": [64], "n": 12288,
                                                 "k": 4096}))[0] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry loads cleanly
        cache.fitted(ident, df, "layer_ops", FAST)
    assert cache.hits == 1


def test_cache_directory_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert PredictorCache().directory == tmp_path / "predictors"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "vidur_search"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vidur_search"


# ---------------------------------------------------------------------- tables
def test_token_table_matches_the_predictor_at_grid_points_and_interpolates() -> None:
    df = layer_ops_frame()
    res = fit_profile(df, "layer_ops", FAST)["gate_up_proj"]
    pts = integer_points(8192, 256, 16)
    assert pts[0] == 1 and pts[-1] == 8192 and np.all(np.diff(pts) > 0)
    assert np.array_equal(pts[:256], np.arange(1, 257))
    vals = res.predict(pd.DataFrame({"num_tokens": pts, "n": 22016, "k": 4096}))
    table = TokenTable(pts, vals, 8192)
    np.testing.assert_array_equal(table.values[pts], vals)
    i = np.flatnonzero(np.diff(pts) > 1)[5]  # two grid points with integers between
    a, b = pts[i], pts[i + 1]
    mid = (a + b) // 2
    want = vals[i] + (vals[i + 1] - vals[i]) * (mid - a) / (b - a)
    assert table[mid] == pytest.approx(want, rel=1e-12)
    assert min(vals[i], vals[i + 1]) <= table[mid] <= max(vals[i], vals[i + 1])


def test_octave_table_grid_points_interpolation_and_bit_identical_paths() -> None:
    axis = OctaveAxis.covering(5000, 8)
    assert axis.upper == 8192 and axis.points[0] == 1 and axis.points[-1] == 8192
    rows = integer_points(40, 8, 4)
    grid = np.random.default_rng(0).random((len(rows), len(axis.points)))
    table = OctaveTable(rows, axis, grid, 40)
    r = int(rows[3])
    for j in (0, 17, len(axis.points) - 1):
        assert table.lookup(r, float(axis.points[j])) == grid[3, j]
    x = (axis.points[20] + axis.points[21]) / 2
    assert table.lookup(r, x) == pytest.approx((grid[3, 20] + grid[3, 21]) / 2, rel=1e-12)
    xs = np.random.default_rng(1).uniform(1, 8192, 5000)
    assert table.lookup_row(r, xs).tolist() == [table.lookup(r, float(v)) for v in xs]


def test_sparse_row_table_matches_the_dense_one() -> None:
    """Keeping only the grid's rows (interpolating between them at lookup) gives the dense
    table's values, for a fraction of the memory."""
    axis = OctaveAxis(13, 8)
    rows = integer_points(300, 8, 4)
    grid = np.random.default_rng(0).random((len(rows), len(axis.points)))
    dense, sparse = OctaveTable(rows, axis, grid, 300), SparseRowTable(rows, axis, grid, 300)
    assert sparse.rows == 300 and sparse.values.shape[0] < dense.values.shape[0] / 4
    xs = np.random.default_rng(1).uniform(1, 8192, 50)
    for r in (0, 1, 5, 8, 9, 77, 128, 299, 300):
        got = [sparse.lookup(r, float(x)) for x in xs]
        np.testing.assert_allclose(got, [dense.lookup(r, float(x)) for x in xs], rtol=1e-12)
        np.testing.assert_allclose(sparse.lookup_row(r, xs), got, rtol=1e-12)


# ---------------------------------------------------------------------- profiled model
def test_profiled_model_uses_profiles_and_counts_out_of_range(store: ProfileStore,
                                                              tmp_path: Path) -> None:
    pm = profiled(store, tmp_path / "cache")
    assert pm.sources["qkv_proj"] == pm.sources["embedding"] == LAYER_SOURCE
    assert "attention_decode" not in pm.sources  # no attention profile: the fallback
    roof = RooflineModel(pm.model, pm.sku, pm.node, TP, 1)
    # decode attention comes from the fallback, the rest from the synthetic profile
    d = pm.breakdown([], [], [1000] * 8)[0]
    assert d["attention_decode"] == pytest.approx(roof.breakdown([], [], [1000] * 8)[0][
        "attention_decode"], rel=1e-3)
    assert d["qkv_proj"] == pytest.approx(32 * (6.0 + 0.05 * 8) * 1e-6, rel=0.05)
    assert sum(d.values()) == pytest.approx(pm.stage_times([], [], [1000] * 8)[0], rel=1e-12)
    assert not pm.out_of_range
    pm.stage_times([1024], [0], [])  # inside the profiled tokens (max 2033)
    assert not pm.out_of_range
    t3000 = pm.stage_times([3000], [0], [])[0]  # beyond: scaled along the roofline
    assert pm.out_of_range["layer_ops"] == 1
    assert pm.stage_times([6000], [0], [])[0] > 1.9 * t3000  # beyond the 4096-token table
    # beyond the token tables and the prefill-attention table (chunk > 4096)
    assert pm.out_of_range["beyond_table"] == 2 and pm.out_of_range["layer_ops"] == 2


def test_profiled_decode_attention_from_a_profile_counts_its_range(store: ProfileStore,
                                                                   tmp_path: Path) -> None:
    store.save(decode_frame(), meta("attention_decode"))
    pm = profiled(store, tmp_path / "cache")
    assert "attention_decode" in pm.sources
    got = pm.breakdown([], [], [1024] * 8)[0]["attention_decode"] / 32
    assert got == pytest.approx((8.0 + 0.2 * 8 + 2e-3 * 8 * 1024) * 1e-6, rel=0.05)
    pm.stage_times([], [], [1024] * 8)
    assert not pm.out_of_range
    pm.stage_times([], [], [1024] * 40)  # batch 40 > 32 measured
    pm.decode_steps(np.full(8, 2000), 200)  # KV passes 2048 after step 48
    assert pm.out_of_range["attention_decode"] == 1 + 151
    pm.stage_times([], [], [5] * 8)  # below the smallest measured KV length (16): counted
    pm.decode_steps(np.full(8, 10), 10)  # KV 10..19: the first 6 steps below 16
    assert pm.out_of_range["attention_decode"] == 1 + 151 + 1 + 6
    beyond = pm.breakdown([], [], [3000] * 8)[0]["attention_decode"]  # along the roofline
    roof = RooflineModel(pm.model, pm.sku, pm.node, TP, 1)
    ratio = (roof.breakdown([], [], [3000] * 8)[0]["attention_decode"]
             / roof.breakdown([], [], [2048] * 8)[0]["attention_decode"])
    at_edge = pm.breakdown([], [], [2048] * 8)[0]["attention_decode"]
    assert beyond == pytest.approx(at_edge * ratio, rel=0.02)


@pytest.mark.parametrize("pp", [1, 2])
def test_profiled_decode_steps_bit_identical(store: ProfileStore, tmp_path: Path,
                                             pp: int) -> None:
    store.save(decode_frame(), meta("attention_decode"))
    pm = profiled(store, tmp_path / "cache", pp=pp)
    rng = np.random.default_rng(pp)
    for D, k in ((1, 5), (17, 64), (64, 9), (70, 3)):  # 70 > max_batch: the loop path
        kv = rng.integers(1, 4000, size=D)
        steps = pm.decode_steps(kv, k)
        assert steps.shape == (k, pp)
        for j in range(k):
            want = pm.stage_times([], [], kv + j)
            assert want == pm.stage_times([], [], (kv + j).tolist())
            assert tuple(steps[j].tolist()) == want


def test_missing_profile_names_the_profiler_command(tmp_path: Path) -> None:
    empty = ProfileStore(tmp_path / "empty")
    with pytest.raises(ConfigError) as err:
        profiled(empty, tmp_path / "cache")
    msg = str(err.value)
    assert "python -m profiler model=llama-2-7b tp=1" in msg
    assert "execution.kind=calibrated" in msg and "layer_ops" in msg


def test_profiled_params_validation() -> None:
    assert ProfiledParams(store="a").store == ("a",)
    with pytest.raises(ConfigError, match="fallback"):
        ProfiledParams(store="a", fallback="magic")
    with pytest.raises(ConfigError, match="power of two"):
        ProfiledParams(store="a", axis_per_octave=12)
    with pytest.raises(ConfigError, match="cv_folds"):
        ProfiledParams(store="a", cv_folds=1)
    with pytest.raises(ConfigError, match=r"execution\.profiled\.interp"):
        ProfiledParams(store="a", interp=["cubic"])
    with pytest.raises(ConfigError, match=r"execution\.profiled\.piecewise"):
        ProfiledParams(store="a", piecewise="yes")


def test_every_grid_search_knob_is_configurable() -> None:
    """Each PredictorParams field can be set from the config and reaches the cache key."""
    import dataclasses

    from simulator.config import SimulationConfig
    from simulator.execution.predictors.params import PredictorParams

    knobs = {f.name for f in dataclasses.fields(PredictorParams)}
    assert knobs <= {f.name for f in dataclasses.fields(ProfiledParams)}
    assert ProfiledParams(store="a").predictor_params() == PredictorParams()
    cfg = SimulationConfig.from_dict({
        "model": MODEL, "sku": SKU,
        "execution": {"kind": "profiled", "profiled": {
            "store": [], "interp": ["linear"], "smooth": [3], "small_folds": 5,
            "piecewise": False, "tie_tolerance": 0.1}},
    })
    key = cfg.execution.profiled.predictor_params().as_key()
    assert (key["interp"], key["smooth"], key["small_folds"], key["piecewise"],
            key["tie_tolerance"]) == (["linear"], [3], 5, False, 0.1)
    assert key != PredictorParams().as_key()


def test_config_builds_a_profiled_model_and_simulates(store: ProfileStore,
                                                      tmp_path: Path) -> None:
    from simulator import SimulationConfig, simulate
    from simulator.engine import build_execution_model

    prof = {"store": [str(store.root)], "cache_dir": str(tmp_path / "cache"), **PARAMS}
    cfg = SimulationConfig.from_dict({
        "model": MODEL, "sku": SKU, "scheduler": {"name": "sarathi", "max_batch_size": 32},
        "workload": {"num_requests": 20, "arrival": {"kind": "poisson", "rate": 5.0}},
        "execution": {"kind": "profiled", "profiled": prof},
    })
    model = build_execution_model(cfg)
    assert isinstance(model, ProfiledModel) and model.sources["qkv_proj"] == LAYER_SOURCE
    result = simulate(cfg, execution=model)
    assert result.summary["throughput"]["requests_per_s"] > 0
    # the summary says which source priced each part, and what was extrapolated
    ex = result.summary["execution"]
    assert ex["kind"] == ex["requested"] == "profiled" and not ex["note"]
    assert ex["measured"]["qkv_proj"] == LAYER_SOURCE
    assert "attention_decode" in ex["modelled"] and "qkv_proj" not in ex["modelled"]
    assert ex["model"].startswith("roofline")  # PARAMS' fallback
    text = format_summary(result.summary)
    assert "execution  profiled" in text and LAYER_SOURCE in text
    with pytest.raises(ConfigError, match=r"execution\.profiled\.stores"):
        SimulationConfig.from_dict({"model": MODEL, "sku": SKU,
                                    "execution": {"kind": "profiled",
                                                  "profiled": {"stores": ["x"]}}})


def test_profiled_without_profiles_runs_the_fallback_and_says_so(tmp_path: Path) -> None:
    """No layer_ops for (model, SKU, TP): the fallback prices everything and the summary
    names what is missing; ``require_profiles`` makes it an error instead."""
    from simulator import SimulationConfig, simulate
    from simulator.execution.profiled import MissingProfilesError

    (tmp_path / "empty").mkdir()
    prof = {"store": [str(tmp_path / "empty")], "fallback": "calibrated",
            "cache_dir": str(tmp_path / "cache")}
    spec = {"model": MODEL, "sku": SKU,
            "workload": {"num_requests": 20, "arrival": {"kind": "poisson", "rate": 5.0}},
            "execution": {"kind": "predictor", "profiled": prof}}  # predictor = profiled
    cfg = SimulationConfig.from_dict(spec)
    assert cfg.execution.kind == "profiled"
    result = simulate(cfg)
    ex = result.summary["execution"]
    assert (ex["requested"], ex["kind"], ex["measured"]) == ("profiled", "calibrated", {})
    assert "qkv_proj" in ex["modelled"] and "python -m profiler" in ex["note"]
    assert "execution  calibrated (asked: profiled)" in format_summary(result.summary)
    plain = simulate(SimulationConfig.from_dict({**spec, "execution": {"kind": "calibrated"}}))
    assert plain.summary["e2e"] == result.summary["e2e"]  # the same model ran
    strict = {**spec, "execution": {"kind": "profiled",
                                    "profiled": {**prof, "require_profiles": True}}}
    with pytest.raises(MissingProfilesError, match="python -m profiler"):
        simulate(SimulationConfig.from_dict(strict))


def test_profiled_honours_fp8(tmp_path: Path) -> None:
    """Without fp8 profiles, FP8 weights scale the measured GEMMs and an FP8 KV cache the
    measured attention by the fallback's fp8 / bf16 ratio (and the sources say so): never
    silently at bf16 speed, and still on the measured curves."""
    from simulator import SimulationConfig, simulate

    base = {"model": "llama-3-8b", "sku": "h100-sxm", "scheduler": {"name": "vllm_v1"},
            "workload": {"num_requests": 40, "arrival": {"kind": "poisson", "rate": 8.0}},
            "execution": {"kind": "profiled", "profiled": {
                "fallback": "calibrated", "cache_dir": str(tmp_path / "cache")}}}

    def run(weights: str, kv: str) -> dict:
        return simulate(SimulationConfig.from_dict(
            {**base, "precision": {"weights": weights, "kv_cache": kv}})).summary

    bf16, kv8, w8 = run("bf16", "bf16"), run("bf16", "fp8"), run("fp8", "bf16")
    assert bf16["execution"]["kind"] == kv8["execution"]["kind"] == "profiled"
    assert "fp8 / bf16 KV ratio" in kv8["execution"]["measured"]["attention_decode"]
    assert kv8["tpot"]["p50"] < bf16["tpot"]["p50"]
    assert w8["execution"]["kind"] == "profiled"
    measured = w8["execution"]["measured"]
    assert "fp8 / bf16 GEMM ratio" in measured["qkv_proj"]
    assert "GEMM ratio" in measured["down_proj"] and "GEMM ratio" not in measured["act"]
    assert w8["tpot"]["p50"] < bf16["tpot"]["p50"]
    both = run("fp8", "fp8")
    assert both["execution"]["kind"] == "profiled" and both["tpot"]["p50"] < w8["tpot"]["p50"]


# ---------------------------------------------------------------------- reference data
def test_reference_gemm_held_out_median_ape(reference_dir: Path, tmp_path: Path) -> None:
    from profiler.import_vidur import import_vidur

    with contextlib.redirect_stderr(io.StringIO()):
        import_vidur(reference_dir / "vidur" / "profiling", tmp_path / "vidur")
    df, _ = ProfileStore(tmp_path / "vidur").load("h100-sxm", "llama-2-70b", 4, "layer_ops")
    rows = df[df["op"] == "qkv_proj"].reset_index(drop=True)
    perm = np.random.default_rng(0).permutation(len(rows))
    cut = int(0.8 * len(rows))
    tr, te = rows.iloc[perm[:cut]], rows.iloc[perm[cut:]]
    cols = ["num_tokens", "n", "k"]
    res = select(tr[cols], tr["median_us"].to_numpy(), "layer_ops", PredictorParams())
    assert np.median(ape(res.predict(te[cols]), te["median_us"].to_numpy())) < 5


def test_the_cache_key_reads_the_expert_columns_of_moe_rows() -> None:
    """An edited expert count or top-k of a MoE table is a new fit, not a stale one."""
    from simulator.execution.predictors.cache import content_hash

    T = np.array([1, 2, 4, 8, 16, 32])
    rows = pd.DataFrame({"op": "moe_experts", "num_tokens": T, "n": 768, "k": 2048,
                         "experts": 128, "topk": 8, "median_us": 10.0 + T})
    other = rows.assign(topk=4)
    assert content_hash(rows, "layer_ops") != content_hash(other, "layer_ops")
    dense = rows.assign(op="o_proj")
    assert content_hash(dense, "layer_ops") == content_hash(dense.assign(topk=4), "layer_ops")
