"""``python -m vidur_search.validate``: simulate a benchmark a user already ran, side by side.

    python -m vidur_search.validate bench=results.json model=llama-3.1-8b sku=h100-sxm \\
        tp=1 scheduler=vllm_v1 scheduler.max_batch_size=128 scheduler.chunk_size=2048

``bench`` is a vLLM benchmark_serving result JSON, an aiperf ``profile_export.jsonl``, a
genai-perf ``profile_export.json`` or a per-request CSV/JSONL
(``vidur_search.bench_formats``); ``input_tokens=N`` gives the prompt length of every
request when a genai-perf export does not count it. The simulation serves the same
requests (prompt and output tokens from the file, in send order) with the same kind of
load (``workload_for``; the ``load`` line says which and why): a concurrency cap without
a finite request rate (vLLM ``--max-concurrency``, aiperf ``--concurrency``) is a closed
loop of that many users; a rate with a cap is scheduled arrivals that wait for one of
the slots; otherwise the file's per-request send times are replayed (open loop), else
the ``request_rate`` (Poisson, or Gamma with vLLM's ``burstiness``), else everything at
once. ``load=closed|replay`` and ``concurrency=N`` override the file or say what it does
not; ``concurrency`` is the number of users (closed) or the cap (auto), so with
``load=replay`` (the send times, open loop, no cap) it is an error naming both keys.
Model, GPU SKU, TP/PP, replicas and the engine preset (``scheduler=<preset>`` and its
knobs) come from the command line, as do ``precision.*``, ``execution.*`` (``kind``:
the batch-runtime model, ``calibrated`` by default; ``roofline.*``, ``profiled.*``) and
``engine.*``, all settable without ``+`` and checked by the simulator. Prints measured
and simulated TTFT, TPOT and E2E (mean, P50, P90), output throughput and the % error
(no throughput row, and a note, when the file has neither a duration nor per-request
send times; a figure that cannot be computed prints as ``-``, never ``nan``);
``output.json=FILE`` also writes them as JSON. A malformed file or a bad setting exits
with status 2 and a message naming what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import yaml
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from simulator import ConfigError, SimulationConfig, SimulationResult, simulate
from simulator.paths import check_output_file
from simulator.workload import RequestTable
from vidur_search.bench_formats import BenchRun, read_bench
from vidur_search.cli import run_and_exit

METRICS = ("ttft", "tpot", "e2e")
STATS = ("mean", "p50", "p90")
LABELS = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E"}


@dataclass(frozen=True)
class RunMetrics:
    """Per-request latencies (seconds, one entry per request in the same order on both
    sides) and the output throughput (tokens/s) of one run, measured or simulated."""

    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    throughput: float
    completed: int

    def stat(self, metric: str, stat: str) -> float:
        """``mean``, ``p50`` or ``p90`` of a metric over the requests where it is defined."""
        v = np.asarray(getattr(self, metric), dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return math.nan
        return float(v.mean()) if stat == "mean" else float(np.percentile(v, int(stat[1:])))


def measured_metrics(bench: BenchRun) -> RunMetrics:
    """The benchmark's own figures, with the simulator's metric definitions."""
    return RunMetrics(bench.ttft, bench.tpot, bench.e2e, bench.output_throughput, len(bench))


def simulated_metrics(result: SimulationResult) -> RunMetrics:
    """TTFT, TPOT and E2E per request (NaN for rejected or unfinished ones) and the output
    throughput from the first arrival to the last completion."""
    req = result.requests
    done = req["completed_at"].notna().to_numpy() & ~req["rejected"].to_numpy()
    nan = np.full(len(req), np.nan)
    ttft = np.where(done, req["ttft"].to_numpy(), nan)
    tpot = np.where(done, req["tpot"].to_numpy(), nan)
    e2e = np.where(done, req["e2e"].to_numpy(), nan)
    span = (float(req.loc[done, "completed_at"].max() - req["arrived_at"].min())
            if done.any() else math.nan)
    out = float(req.loc[done, "num_decode_tokens"].sum())
    return RunMetrics(ttft, tpot, e2e, out / span if span > 0 else math.nan, int(done.sum()))


def _err(sim: float, meas: float) -> float:
    return (sim / meas - 1.0) * 100.0 if meas and math.isfinite(meas) else math.nan


def compare(measured: RunMetrics, simulated: RunMetrics) -> pd.DataFrame:
    """One row per (metric, stat) and one for throughput (left out when the measured
    throughput is unknown): measured, simulated (ms or tokens/s), signed % error, and for
    latencies the median per-request |% error|."""
    rows = []
    for metric in METRICS:
        m_all = np.asarray(getattr(measured, metric), dtype=np.float64)
        s_all = np.asarray(getattr(simulated, metric), dtype=np.float64)
        per_req = math.nan
        if len(m_all) == len(s_all):
            ok = np.isfinite(m_all) & np.isfinite(s_all) & (m_all > 0)
            if ok.any():
                per_req = float(np.median(np.abs(s_all[ok] / m_all[ok] - 1.0)) * 100.0)
        for stat in STATS:
            m, s = measured.stat(metric, stat) * 1e3, simulated.stat(metric, stat) * 1e3
            rows.append({"metric": metric, "stat": stat, "measured": m, "simulated": s,
                         "err_pct": _err(s, m), "request_abs_err_p50": per_req})
    if math.isfinite(measured.throughput):  # unknown without a duration or send times
        rows.append({"metric": "throughput", "stat": "output_tok_s",
                     "measured": measured.throughput, "simulated": simulated.throughput,
                     "err_pct": _err(simulated.throughput, measured.throughput),
                     "request_abs_err_p50": math.nan})
    return pd.DataFrame(rows)


def _cell(value: float, width: int, spec: str, suffix: str = "") -> str:
    """``value`` formatted to ``width`` characters, ``-`` when it is not a finite number."""
    text = f"{value:{spec}}{suffix}" if math.isfinite(value) else "-"
    return f"{text:>{width}}"


def format_comparison(table: pd.DataFrame, title: str = "") -> str:
    """The comparison as aligned plain text (ms for latencies, tokens/s for throughput;
    ``-`` for a figure that cannot be computed)."""
    lines = [title] if title else []
    lines.append(f"{'metric':<17}{'stat':<6}{'measured':>12}{'simulated':>12}{'error':>9}"
                 f"{'|err| req p50':>15}")
    for r in table.itertuples():
        label = LABELS.get(r.metric, r.metric)
        unit = "tok/s" if r.metric == "throughput" else "ms"
        per_req = "" if math.isnan(r.request_abs_err_p50) else f"{r.request_abs_err_p50:.1f}%"
        stat = "" if r.metric == "throughput" else r.stat
        lines.append(f"{label + ' ' + unit:<17}{stat:<6}{_cell(r.measured, 12, '.1f')}"
                     f"{_cell(r.simulated, 12, '.1f')}{_cell(r.err_pct, 9, '+.1f', '%')}"
                     f"{per_req:>15}")
    return "\n".join(lines)


LOADS = ("auto", "closed", "replay")


def _schedule(rate: float, shape: float, n: int, seed: int) -> np.ndarray:
    """Send times of an open-loop benchmark at ``rate`` (first at 0): Gamma gaps of shape
    ``shape`` (1: Poisson; inf: constant gaps), as vLLM's burstiness and aiperf's arrival
    pattern draw them."""
    if math.isinf(shape):
        gaps = np.full(n, 1.0 / rate)
    else:
        gaps = np.random.default_rng(seed).gamma(shape, 1.0 / (rate * shape), size=n)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])])


def _pattern(rate: float, shape: float, seed: int) -> str:
    kind = ("Poisson" if shape == 1.0 else "constant-gap" if math.isinf(shape)
            else f"Gamma (burstiness {shape:g})")
    return f"{kind} arrivals at {rate:g} req/s" + ("" if math.isinf(shape) else f" (seed {seed})")


def _check_load(load: Any, concurrency: Any) -> int:
    """Validate the ``load`` and ``concurrency`` settings; the concurrency as an int.
    ``load=replay`` with ``concurrency`` is an error: replay is open loop, without a cap."""
    if load not in LOADS:
        raise ConfigError("load", load, "allowed values are " + ", ".join(LOADS)
                          + " (auto: from the file; closed: a closed loop of concurrency "
                          "users; replay: the file's send times)")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int | np.integer) \
            or concurrency < 0:
        raise ConfigError("concurrency", concurrency, "a whole number >= 0 (0: the file's "
                          "max_concurrency / aiperf concurrency)")
    if load == "replay" and concurrency:
        raise ConfigError("concurrency", int(concurrency),
                          "does not apply with load=replay, which sends every request at the "
                          "file's send time, open loop, with no cap (under a cap, send times "
                          "follow completions); use load=closed concurrency=N for a closed "
                          "loop of N users, load=auto concurrency=N for the file's request "
                          "rate capped at N in flight, or leave concurrency out")
    return int(concurrency)


def workload_for(bench: BenchRun, seed: int = 0, load: str = "auto", concurrency: int = 0
                 ) -> tuple[dict[str, Any], RequestTable, str]:
    """The workload mirroring how the benchmark offered its load: (workload config mapping,
    request table, a sentence saying which load model it is and why).

    ``load=auto``: a concurrency cap (the file's, or ``concurrency``) without a finite
    request rate is a closed loop of that many users, even when the file has send times
    (under a cap they are set by completions: replaying them would hide the simulator's
    own throughput); a finite rate with a cap is the ``capped`` arrival kind (scheduled
    arrivals waiting for one of N slots); otherwise the file's send times are replayed,
    else arrivals rebuilt from the rate, else all at t=0. ``load=closed`` / ``replay``
    force those models (replay: open loop, so ``concurrency`` is an error with it and the
    file's own cap is not applied; the sentence says so). Request i of the simulation has
    the file's i-th lengths (in send order), so latencies compare request by request.
    """
    users = _check_load(load, concurrency) or bench.max_concurrency
    n = len(bench)
    rate = bench.request_rate
    finite_rate = math.isfinite(rate) and rate > 0
    shape = bench.burstiness if bench.burstiness > 0 else 1.0  # NaN, 0: Poisson
    static = {"num_requests": n, "arrival": {"kind": "static"}}
    src = (f"concurrency={concurrency}" if concurrency else "the file's "
           + ("max_concurrency" if bench.format == "vllm_bench" else "concurrency"))
    if load == "replay":
        if not bench.has_arrivals:
            raise ConfigError("load", load, f"{bench.path} has no per-request send times; "
                              "use load=auto or load=closed (with concurrency=N)")
        why = ""
        if bench.max_concurrency:
            key = "max_concurrency" if bench.format == "vllm_bench" else "concurrency"
            why = (f"; the file's {key} {bench.max_concurrency} is not applied "
                   "(load=auto applies it)")
        return static, bench.requests(), ("replayed (load=replay): the file's per-request "
                                          "send times, open loop" + why)
    if users > 0 and (load == "closed" or not finite_rate):
        why = "load=closed" if load == "closed" else f"{src} {users}, no finite request rate"
        if load == "closed" and finite_rate:
            why += f"; the file's request rate {rate:g} req/s is ignored"
        if bench.has_arrivals:
            why += "; the file's send times are not replayed"
            if bench.peak_in_flight > users:
                why += (f"; but up to {bench.peak_in_flight} requests were in flight in the "
                        "file: check the concurrency")
        wl = {"num_requests": n, "arrival": {"kind": "closed", "concurrency": int(users)}}
        return wl, bench.requests(), (f"closed loop of {users} users, each sending its next "
                                      f"request when one completes ({why})")
    if load == "closed":
        raise ConfigError("concurrency", concurrency, "load=closed needs the number of users: "
                          f"concurrency=N ({bench.path} records no concurrency)")
    if users > 0:  # a finite rate and a cap
        catch_up = bench.format != "aiperf"
        table = RequestTable(_schedule(rate, shape, n, seed), bench.input_tokens,
                             bench.output_tokens)
        wl = {"num_requests": n, "arrival": {"kind": "capped", "rate": float(rate),
                                             "concurrency": int(users),
                                             "catch_up": catch_up}}
        wait = ("overdue requests go as slots free, as vLLM" if catch_up else
                "waiting delays the rest of the schedule, as aiperf")
        return wl, table, (f"{_pattern(rate, shape, seed)}, at most {users} in flight "
                           f"(request rate and {src}: a request waits for a free slot; "
                           f"{wait})")
    if bench.has_arrivals:
        why = ""  # a per-request table says nothing about the load
        if bench.format == "vllm_bench":
            why = " (open loop: no max_concurrency in the file)"
        elif bench.format == "aiperf" and finite_rate:
            why = f" (open loop at {rate:g} req/s: no concurrency cap recorded)"
        elif bench.format == "aiperf":
            peak = bench.peak_in_flight
            why = (f" (no concurrency or rate recorded; at most {peak} requests were in "
                   f"flight: if the run was a closed loop, say load=closed concurrency={peak})")
        return static, bench.requests(), "replayed: the file's per-request send times" + why
    if finite_rate:
        table = RequestTable(_schedule(rate, shape, n, seed), bench.input_tokens,
                             bench.output_tokens)
        return static, table, f"{_pattern(rate, shape, seed)} (no send times in the file)"
    return static, bench.requests(), "all requests at t=0 (no rate, concurrency or send times)"


def simulation_for(bench: BenchRun, *, model: str, sku: str, tp: int = 1, pp: int = 1,
                   replicas: int = 1, ep: int = 1, scheduler: dict[str, Any] | None = None,
                   execution: dict[str, Any] | None = None, router: str = "least_outstanding",
                   node: str = "", catalogue: str = "", seed: int = 0,
                   engine: dict[str, Any] | None = None,
                   precision: dict[str, Any] | None = None,
                   load: str = "auto", concurrency: int = 0,
                   ) -> tuple[SimulationConfig, RequestTable, str]:
    """The SimulationConfig and request table that mirror ``bench`` on the given
    deployment, and a sentence describing the offered load (``load`` and
    ``concurrency`` as in ``workload_for``)."""
    wl, table, load = workload_for(bench, seed, load, concurrency)
    cfg: dict[str, Any] = {
        "model": model, "sku": sku, "node": node, "catalogue": catalogue,
        "parallel": {"tensor_parallel": tp, "pipeline_parallel": pp, "replicas": replicas,
                     "expert_parallel": ep},
        "scheduler": dict(scheduler or {}), "router": router, "workload": wl,
        "execution": dict(execution or {"kind": "calibrated"}), "seed": seed,
    }
    if engine:
        cfg["engine"] = dict(engine)
    if precision:
        cfg["precision"] = dict(precision)
    return SimulationConfig.from_dict(cfg), table, load


def run_validation(bench_path: str | Path, *, input_tokens: int = 0, **deployment: Any
                   ) -> tuple[pd.DataFrame, BenchRun, SimulationResult, str]:
    """Read ``bench_path`` (``input_tokens`` as ``read_bench``), simulate it on
    ``deployment`` (``simulation_for``'s keywords); returns (comparison table, the
    benchmark, the simulation result, load description)."""
    _check_load(deployment.get("load", "auto"), deployment.get("concurrency", 0))
    bench = read_bench(bench_path, input_tokens=input_tokens)
    cfg, table, load = simulation_for(bench, **deployment)
    result = simulate(cfg, requests=table)
    return compare(measured_metrics(bench), simulated_metrics(result)), bench, result, load


def _required(section: dict[str, Any], key: str, what: str) -> str:
    value = section.get(key)
    if value in (None, ""):
        raise ConfigError(key, value, f"required: {what} ({key}=...)")
    return str(value)


@cache
def known_keys() -> dict[str, tuple[str, ...]]:
    """Top-level keys of the ``validate`` config (``conf/validate.yaml`` and its default
    groups) -> the keys allowed inside them (empty: not checked here; the simulator's
    config rejects unknown scheduler, execution, engine and precision keys itself)."""
    doc = yaml.safe_load(files("vidur_search.conf").joinpath("validate.yaml").read_text())
    keys: dict[str, tuple[str, ...]] = {}
    for entry in doc.get("defaults", []):
        if isinstance(entry, dict):
            group = next(iter(entry))
            if not group.startswith("override "):
                keys[group] = ()
    for key, value in doc.items():
        if key not in ("defaults", "hydra"):
            keys[key] = tuple(value) if key == "output" and isinstance(value, dict) else ()
    return keys


def check_keys(plain: dict[str, Any]) -> None:
    """ConfigError naming the first key (e.g. from ``+bogus=1``) the command does not know."""
    known = known_keys()
    for key, value in plain.items():
        if key not in known:
            raise ConfigError(key, value, "unknown key; allowed keys: " + ", ".join(known))
        if known[key] and isinstance(value, dict):
            for sub, sub_value in value.items():
                if sub not in known[key]:
                    raise ConfigError(f"{key}.{sub}", sub_value, "unknown key; allowed keys: "
                                      + ", ".join(known[key]))


def run(cfg: DictConfig) -> pd.DataFrame:
    """The Hydra app's body: check the settings, simulate, print the comparison."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    check_keys(plain)
    out = (plain.get("output") or {}).get("json") or ""
    # before any work: an output that cannot be written would lose the simulation
    out_path = check_output_file("output.json", to_absolute_path(str(out))) if out else None
    bench_path = to_absolute_path(_required(plain, "bench", "the benchmark result file"))
    model = _required(plain, "model", "a catalogue model")
    sku = _required(plain, "sku", "a catalogue GPU SKU")
    table, bench, result, load = run_validation(
        bench_path, model=model, sku=sku, tp=plain["tp"], pp=plain["pp"],
        replicas=plain["replicas"], ep=plain["ep"], scheduler=plain["scheduler"],
        execution=plain["execution"], router=plain["router"], node=plain["node"],
        catalogue=plain["catalogue"], seed=plain["seed"], engine=plain["engine"],
        precision=plain.get("precision"), load=plain.get("load", "auto"),
        concurrency=plain.get("concurrency", 0), input_tokens=plain.get("input_tokens", 0))
    s = result.summary["counts"]
    print(f"bench      {bench.path} ({bench.format}, {len(bench)} requests"
          + (f", {bench.failed} failed left out" if bench.failed else "") + ")")
    print(f"load       {load}")
    print(f"simulated  {model} on {plain['replicas']} x {plain['tp'] * plain['pp']} {sku}, "
          f"scheduler {plain['scheduler']['name']}, execution {plain['execution']['kind']}: "
          f"{s['completed']} completed, {s['rejected']} rejected, {s['preemptions']} "
          "preemptions")
    for note in bench.notes:
        print(f"note       {note}")
    if not (table["metric"] == "throughput").any():
        print(f"note       no throughput row: {bench.path} has no duration and no per-request "
              "send times, so its output throughput is unknown")
    print(format_comparison(table))
    if out_path is not None:
        path = out_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "bench": bench.path, "format": bench.format, "load": load,
            "rows": table.replace({np.nan: None}).to_dict(orient="records"),
            "config": result.records.config}, indent=2, default=str))
        print(f"written    {path}")
    return table


@hydra.main(config_path="pkg://vidur_search.conf", config_name="validate", version_base=None)
def main(cfg: DictConfig) -> None:
    run_and_exit(run, cfg)


if __name__ == "__main__":
    main()
