"""The search app's config schema (Hydra structured configs) and its semantic checks.

The dataclasses below are registered in Hydra's ConfigStore as ``search_schema`` and sit
first in ``conf/app/config.yaml``'s defaults, so Hydra itself rejects a misspelt key or a value
of the wrong type with its own message. ``check`` then rejects what types cannot express
(an unknown SKU or one without a price, an empty space or a bad entry in it, an SLO
quantile we do not measure, a Ray address or storage URL that cannot work, ...) by raising
``ConfigError`` before Ray starts or any trial runs (the output folder is checked by
``cli.CheckOutputDir`` before Hydra creates it).

``workloads`` stays an untyped mapping here: each entry is a ``simulator`` workload and is
checked, key by key, by ``simulator.workload.WorkloadConfig`` (unknown keys included).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from simulator import ConfigError
from simulator.catalogue import load_catalogue
from simulator.config import build
from simulator.errors import is_number, one_of
from simulator.precision import Precision
from simulator.workload import WorkloadConfig

SAMPLERS = ("tpe", "nsga2", "grid")
MODES = ("normal", "nightly")
REPLICA_SCALING = ("linear", "simulate")
SLO_QUANTILES = ("p50", "p90", "p95", "p99")
#: Optuna's samplers seed numpy's legacy generator: a seed in [0, 2**32).
MAX_SEED = 2**32 - 1
RAY_ADDRESSES = ("null or empty (start Ray in this process), 'local' (a new local instance), "
                 "'auto' (the cluster `ray start` started on this machine), "
                 "'<host>:<port>' (a cluster's GCS address, e.g. 10.0.0.1:6379) or "
                 "'ray://<host>:<port>' (Ray Client, e.g. ray://head:10001)")
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")
#: Workload presets (``conf/workload/``) a capacity search can use (open-loop arrivals).
WORKLOAD_PRESETS = ("chat", "fixed", "trace", "trace_lengths")
STORAGE_EXAMPLE = ("an SQLAlchemy database URL, e.g. sqlite:////abs/path/optuna.db or "
                   "postgresql://user@host/db, or empty for optuna.db in the output folder")


@dataclass
class ModelSettings:
    name: str = "llama-3-8b"
    catalogue: str = ""  # directory of user YAML merged over the built-in catalogue


@dataclass
class SkuSettings:
    skus: list[str] = field(default_factory=lambda: ["h100-sxm"])
    prices: dict[str, float] = field(default_factory=dict)  # USD/GPU-hour; {} = catalogue


@dataclass
class NodeSettings:
    nodes: dict[str, str] = field(default_factory=dict)  # sku -> node type; {} = defaults


@dataclass
class SloSettings:
    ttft_quantile: str = "p90"
    ttft_s: float = 2.0
    tbt_quantile: str = "p99"
    tbt_s: float = 0.2
    max_sched_delay_p99_s: float = 5.0


@dataclass
class SpaceSettings:
    tensor_parallel: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    pipeline_parallel: list[int] = field(default_factory=lambda: [1])
    replicas: list[int] = field(default_factory=lambda: [1])
    max_gpus: int = 8
    fill_budget: bool = True  # replicas = max_gpus // (tp * pp) instead of the list
    schedulers: list[str] = field(default_factory=lambda: ["vllm_v0", "orca", "sarathi"])
    batch_caps: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    chunk_sizes: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    # MoE: also try expert parallelism over the whole deployment (EP = replicas x TP,
    # vLLM's --enable-expert-parallel with data-parallel replicas)
    expert_parallel: list[bool] = field(default_factory=lambda: [False])


@dataclass
class CapacityConfig:
    # a probe at QPS q simulates max(min, q * window_s) requests per replica, at most max
    min_requests_per_replica: int = 200
    max_requests_per_replica: int = 3000
    window_s: float = 60.0
    precision: float = 0.05  # relative width of the final QPS bracket
    min_qps: float = 0.01
    max_qps: float = 10000.0
    max_simulations: int = 24
    replica_scaling: str = "linear"  # linear: simulate one replica at QPS / replicas
    max_trial_s: float = 0.0  # > 0: a trial running longer is recorded as failed


@dataclass
class SearchSettings:
    sampler: str = "tpe"
    sampler_seed: int | None = None  # Optuna sampler's seed; None = the top-level seed
    num_trials: int = 40  # per workload (grid: ignored, every candidate runs)
    space: SpaceSettings = field(default_factory=SpaceSettings)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    storage: str = ""  # Optuna storage URL; "" = sqlite in the output (or nightly) folder
    warm_start_points: int = 5  # nightly: previous best plans re-measured first
    prior_points: int = 8  # TPE/NSGA-II: the fluid model's best candidates measured first


@dataclass
class RaySettings:
    address: str | None = None  # None: start Ray in this process; "auto" / "ray://h:p"
    num_cpus: int | None = None  # local only; None = every core
    cpus_per_trial: float = 1.0
    # a worker runs trial after trial (its models stay cached); false: a fresh worker per
    # trial, each placed where a CPU is free when the trial starts
    reuse_actors: bool = True


@dataclass
class OutputSettings:
    mode: str = "normal"  # nightly: dated folder under one root, warm start, diff
    dir: str = "outputs/${name}/${now:%Y-%m-%d_%H-%M-%S}"
    regression_tolerance: float = 0.02  # nightly: a best capacity/$ drop beyond this fails
    target_qps: float = 0.0  # > 0: also report the plan that serves this load
    slo_tiers: dict[str, dict[str, float]] = field(default_factory=dict)
    progress: bool = True


@dataclass
class SearchAppConfig:
    name: str = "default"
    seed: int = 0
    reference_dir: str = "../shared/reference"  # public measurements and traces
    model: ModelSettings = field(default_factory=ModelSettings)
    sku: SkuSettings = field(default_factory=SkuSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    workloads: dict[str, Any] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=lambda: {
        "kind": "profiled", "profiled": {"store": [], "fallback": "calibrated"}})
    precision: dict[str, str] = field(  # weights / kv_cache: bf16 or fp8
        default_factory=lambda: {"weights": "bf16", "kv_cache": "bf16"})
    slo: SloSettings = field(default_factory=SloSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    ray: RaySettings = field(default_factory=RaySettings)
    output: OutputSettings = field(default_factory=OutputSettings)


def register() -> None:
    """Put the schema in Hydra's ConfigStore (``- search_schema`` in the defaults list)."""
    ConfigStore.instance().store(name="search_schema", node=SearchAppConfig)


def prices(app: dict[str, Any]) -> dict[str, float]:
    """USD per GPU-hour of every searched SKU: the config's override, else the catalogue."""
    cat = load_catalogue(app["model"].get("catalogue") or None)
    out = {}
    for sku in app["sku"]["skus"]:
        price = app["sku"].get("prices", {}).get(sku, cat.sku(sku).price_per_hour)
        if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
            raise ConfigError(f"sku.prices.{sku}", price,
                              "a positive price in USD per GPU-hour (set sku.prices."
                              f"{sku}=<price> or add price_per_hour to the catalogue)")
        out[sku] = float(price)
    return out


def check(app: dict[str, Any]) -> None:
    """Semantic checks Hydra's types cannot express; raises ConfigError naming the field."""
    cat = load_catalogue(app["model"].get("catalogue") or None)
    cat.model(app["model"]["name"])
    if not app["sku"]["skus"]:
        raise ConfigError("sku.skus", [], "a non-empty list of catalogue SKUs")
    for sku in app["sku"]["skus"]:
        cat.sku(sku)
    for sku in app["sku"].get("prices", {}):
        if sku not in app["sku"]["skus"]:
            raise ConfigError("sku.prices", sku, "SKUs of sku.skus: "
                              + ", ".join(app["sku"]["skus"]))
    prices(app)
    for sku, node in app["node"].get("nodes", {}).items():
        one_of(f"node.nodes.{sku}", node, cat.nodes_for(sku))
    slo = app["slo"]
    one_of("slo.ttft_quantile", slo["ttft_quantile"], SLO_QUANTILES)
    one_of("slo.tbt_quantile", slo["tbt_quantile"], SLO_QUANTILES)
    for key in ("ttft_s", "tbt_s", "max_sched_delay_p99_s"):
        if not slo[key] > 0:
            raise ConfigError(f"slo.{key}", slo[key], "a positive number of seconds")
    check_workloads(app["workloads"])
    search = app["search"]
    one_of("search.sampler", search["sampler"], SAMPLERS)
    one_of("output.mode", app["output"]["mode"], MODES)
    if search["num_trials"] < 1:
        raise ConfigError("search.num_trials", search["num_trials"], "an integer >= 1")
    for key in ("warm_start_points", "prior_points"):
        if search[key] < 0:
            raise ConfigError(f"search.{key}", search[key], "an integer >= 0 (0 = none)")
    cap = search["capacity"]
    one_of("search.capacity.replica_scaling", cap["replica_scaling"], REPLICA_SCALING)
    if cap["min_requests_per_replica"] < 10:
        raise ConfigError("search.capacity.min_requests_per_replica",
                          cap["min_requests_per_replica"],
                          "an integer >= 10 (quantiles need enough requests)")
    if cap["max_requests_per_replica"] < cap["min_requests_per_replica"]:
        raise ConfigError("search.capacity.max_requests_per_replica",
                          cap["max_requests_per_replica"],
                          f">= search.capacity.min_requests_per_replica="
                          f"{cap['min_requests_per_replica']}")
    if not cap["window_s"] > 0:
        raise ConfigError("search.capacity.window_s", cap["window_s"], "> 0 seconds")
    if not 0 < cap["precision"] < 1:
        raise ConfigError("search.capacity.precision", cap["precision"],
                          "a fraction in (0, 1), e.g. 0.05")
    if not 0 < cap["min_qps"] < cap["max_qps"]:
        raise ConfigError("search.capacity.min_qps", cap["min_qps"],
                          f"positive and below search.capacity.max_qps={cap['max_qps']}")
    if cap["max_simulations"] < 2:
        raise ConfigError("search.capacity.max_simulations", cap["max_simulations"],
                          "an integer >= 2")
    max_trial_s = cap.get("max_trial_s", 0.0)
    if not _number(max_trial_s) or not max_trial_s >= 0:
        raise ConfigError("search.capacity.max_trial_s", max_trial_s,
                          "a number of seconds >= 0 (0 = no limit)")
    check_space(search["space"])
    check_sampler_seed(app)
    if search.get("storage"):
        check_storage(search["storage"])
    check_ray(app["ray"])
    out = app["output"]
    if not _number(out["target_qps"]) or not 0 <= out["target_qps"] < math.inf:
        raise ConfigError("output.target_qps", out["target_qps"],
                          "a finite number of requests/s >= 0 (0 = no target-load plan)")
    tol = out.get("regression_tolerance", 0.02)
    if not _number(tol) or not 0 <= tol < 1:
        raise ConfigError("output.regression_tolerance", tol,
                          "a fraction in [0, 1), e.g. 0.02 (nightly: a drop of the best "
                          "capacity per dollar beyond it is a regression)")
    check_slo_tiers(out.get("slo_tiers") or {})
    if out["mode"] == "nightly":
        check_nightly_dir(out["dir"])
    build(Precision, app.get("precision") or {}, "precision")


def check_workloads(workloads: Any) -> None:
    """``workloads``: at least one, each a non-empty mapping that builds a simulator
    ``WorkloadConfig`` (the checks ``python -m vidur_search.simulate`` makes, trace header
    included), errors named ``workloads.<name>.<key>``. Keys left out take
    ``WorkloadConfig``'s defaults (``+workloads.code.lengths.kind=fixed`` is a workload)."""
    presets = ", ".join(WORKLOAD_PRESETS)
    if not isinstance(workloads, Mapping) or not workloads:
        raise ConfigError("workloads", workloads, "at least one named workload, e.g. "
                          f"'+workload@workloads.chat=chat' (presets: {presets})")
    for name, workload in workloads.items():
        if not isinstance(workload, Mapping) or not workload:
            raise ConfigError(
                f"workloads.{name}", workload,
                f"must be a workload mapping; add one from a preset with "
                f"'+workload@workloads.{name}=chat' (presets: {presets}), or drop it with "
                f"'~workloads.{name}'")
        try:
            WorkloadConfig.from_dict(workload)
        except ConfigError as err:
            raise in_workload(err, str(name)) from None


_WORKLOAD_KEY = re.compile(
    r"(?<![\w/.-])workload\.(?=(?:"
    + "|".join(f.name for f in dataclasses.fields(WorkloadConfig)) + r")\b)")
_WORKLOAD_GROUP = re.compile(r"(?<![\w/.@-])workload=")


def in_workload(err: ConfigError, name: str) -> ConfigError:
    """``err`` of a simulator workload as the app names it: the field ``workload.X`` and
    every ``workload.<key>`` in the message become ``workloads.<name>.X``, and a preset
    choice ``workload=P`` becomes ``workload@workloads.<name>=P``. Other errors as they are."""
    if err.field != "workload" and not err.field.startswith("workload."):
        return err
    field_name = f"workloads.{name}" + err.field.removeprefix("workload")
    allowed = _WORKLOAD_KEY.sub(f"workloads.{name}.", err.allowed)
    allowed = _WORKLOAD_GROUP.sub(f"workload@workloads.{name}=", allowed)
    return ConfigError(field_name, err.value, allowed)


def check_nightly_dir(out_dir: str) -> None:
    """With ``output=nightly``, ``output.dir`` must end in a folder named like the time
    the run started (``YYYY-MM-DD_HH-MM-SS``): the next night finds its previous run by
    that name (``nightly.latest_run``), and ignores any other."""
    from vidur_search.nightly import is_run_name

    if not is_run_name(Path(out_dir).name):
        raise ConfigError(
            "output.dir", out_dir,
            "a nightly run's folder must be named by its start time, YYYY-MM-DD_HH-MM-SS "
            "(e.g. 2026-01-31_02-00-00), so that the next night finds it: give "
            "output.dir=ROOT/${now:%Y-%m-%d_%H-%M-%S} (the output=nightly default is "
            "outputs/nightly/${name}/${now:%Y-%m-%d_%H-%M-%S}), or leave output.mode=normal")


def _number(value: Any) -> bool:
    """A real number (``errors.is_number``: numpy's too, not a bool) that is not NaN."""
    return is_number(value) and not math.isnan(value)


def check_space(space: dict[str, Any]) -> None:
    """Every entry of ``search.space`` (see ``space.check_space``), naming a bad one."""
    from vidur_search.space import check_space as check_entries

    check_entries(space)


def check_sampler_seed(app: dict[str, Any]) -> None:
    """The Optuna sampler's seed (``search.sampler_seed``, else the top-level ``seed``)
    must be an integer in [0, 2**32): numpy's legacy generator takes no other."""
    seed = app["search"].get("sampler_seed")
    field_name = "search.sampler_seed"
    if seed is None:
        if app["search"]["sampler"] == "grid":
            return  # grid has no sampler; the simulator checks the top-level seed
        seed, field_name = app.get("seed", 0), "seed"
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED):
        raise ConfigError(field_name, seed, f"an integer in [0, {MAX_SEED}] (the Optuna "
                          "sampler's seed; search.sampler_seed=null uses seed)")


def check_storage(url: str) -> None:
    """``search.storage``: a URL SQLAlchemy parses, of a dialect whose driver is installed
    (Optuna's RDB storage opens it only after Ray has started)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("search.storage", url, STORAGE_EXAMPLE) from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError("search.storage", url, f"unknown database kind "
                          f"{parsed.drivername!r}; {STORAGE_EXAMPLE}") from None
    load_driver = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 1.4
    try:
        load_driver()
    except ImportError as err:
        raise ConfigError("search.storage", url, f"the {parsed.drivername} driver is not "
                          f"installed ({err}); install it, or give {STORAGE_EXAMPLE}") from None


def check_ray(ray: dict[str, Any]) -> None:
    """``ray.address`` in a form Ray takes, ``ray.num_cpus`` a CPU count (Ray itself says
    so only after it started, or hangs)."""
    address = ray.get("address")
    if address is not None and not isinstance(address, str):
        raise ConfigError("ray.address", address, "allowed: " + RAY_ADDRESSES)
    address = address or ""
    if address and address not in ("local", "auto"):
        match = _HOST_PORT.fullmatch(address.removeprefix("ray://"))
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise ConfigError("ray.address", address, "allowed: " + RAY_ADDRESSES)
    num_cpus = ray.get("num_cpus")
    if num_cpus is not None and not (isinstance(num_cpus, int)
                                     and not isinstance(num_cpus, bool) and num_cpus >= 1):
        raise ConfigError("ray.num_cpus", num_cpus,
                          "an integer >= 1, or null for every core of this machine")
    per_trial = ray.get("cpus_per_trial", 1.0)
    if not _number(per_trial) or not 0 < per_trial < math.inf:
        raise ConfigError("ray.cpus_per_trial", per_trial, "> 0")
    if num_cpus is not None and not address and per_trial > num_cpus:
        raise ConfigError("ray.cpus_per_trial", per_trial,
                          f"at most ray.num_cpus={num_cpus} (no trial could start)")


def check_slo_tiers(tiers: Any) -> None:
    """``output.slo_tiers`` (see ``plans.validate_tiers``), named as the config names it."""
    from vidur_search.plans import validate_tiers

    validate_tiers(tiers, field="output.slo_tiers")
