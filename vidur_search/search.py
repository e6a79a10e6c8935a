"""The sweep: Ray Tune runs one trial per candidate, Optuna chooses the candidates.

One study per workload. TPE (single objective: capacity per dollar) or NSGA-II (capacity
per dollar vs TTFT vs TBT) sample through Ray Tune's ``OptunaSearch`` with Optuna storage
(SQLite by default, any SQLAlchemy URL); ``grid`` runs every runnable candidate through
Tune's grid search. Each study has a store (a Ray actor seeded from the table) that
workers ask before measuring and hand each new row to; a driver thread appends those rows
to ``trials.parquet`` as they arrive. So a killed sweep restarted on the same output
folder re-runs nothing that finished (the Optuna study, reloaded from its storage, only
asks for the trials still missing from the budget), and the same code works whether Tune's
driver runs in this process or, under Ray Client, on the cluster's head node.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator import ConfigError
from simulator.workload import generate_requests
from vidur_search.capacity import CapacitySettings, Slo
from vidur_search.results import TrialsTable, objective
from vidur_search.settings import in_workload
from vidur_search.space import CHUNKED, Candidate, Space, build_space, simulation_config
from vidur_search.trial import TrialContext, run_trial

# Ray's own environment: no token auth between local processes, no usage reporting, and
# no per-trial CSV/JSON/TensorBoard logs (the trials table is the record).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}
log = logging.getLogger(__name__)
NSGA_METRICS = ["capacity_per_dollar", "ttft_objective", "tbt_objective"]
NSGA_MODES = ["max", "min", "min"]


@dataclass
class StudyPlan:
    """What one workload's study will do (also what ``--dry-run`` style output shows)."""

    workload: str
    ctx: TrialContext
    finished: dict[str, dict[str, Any]]
    remaining: int
    study_name: str
    warm_points: list[dict[str, Any]] = field(default_factory=list)


def base_settings(app: dict[str, Any], workload: dict[str, Any]) -> dict[str, Any]:
    """The per-workload settings every simulation shares (see ``space.simulation_config``)."""
    nodes = dict(app["node"].get("nodes") or {})
    return {"model": app["model"]["name"], "catalogue": app["model"].get("catalogue", ""),
            "nodes": nodes, "workload": workload, "execution": app["execution"],
            "precision": app.get("precision") or {},
            "seed": app["seed"]}


def check_workloads(app: dict[str, Any], space: Space) -> None:
    """Build and generate every workload once, so a bad trace fails before any trial."""
    cap = app["search"]["capacity"]
    for name, workload in app["workloads"].items():
        base = base_settings(app, workload)
        try:
            cfg = simulation_config(base, space.candidates[0],
                                    cap["max_requests_per_replica"])
            generate_requests(cfg.workload, np.random.default_rng(cfg.seed))
        except ConfigError as err:
            raise in_workload(err, name) from err
        if cfg.workload.arrival.kind not in ("poisson", "gamma", "trace"):
            raise ConfigError(f"workloads.{name}.arrival.kind", cfg.workload.arrival.kind,
                              "poisson, gamma or trace (a capacity search scales the rate)")


def make_space(app: dict[str, Any]) -> Space:
    """The runnable candidates; an empty space is a configuration error naming the drops."""
    name, first = next(iter(app["workloads"].items()))
    space_cfg = dict(app["search"]["space"])
    space_cfg["skus"] = list(app["sku"]["skus"])
    try:
        space = build_space(base_settings(app, first), space_cfg, 1)
    except ConfigError as err:
        raise in_workload(err, name) from err
    if not space.candidates:
        raise ConfigError("search.space", "(every configuration dropped)",
                          "no configuration can run:\n" + space.summary())
    return space


def check_profiles(app: dict[str, Any], space: Space) -> list[str]:
    """With ``execution.kind=profiled``, the (SKU, TP) layouts of the space that no store
    has profiles for: their trials run on ``execution.profiled.fallback`` (the trials
    table's ``execution`` column says so). With ``execution.profiled.require_profiles``,
    a missing one stops the search before any trial, naming what to profile."""
    from simulator.config import ExecutionConfig

    if ExecutionConfig(kind=app["execution"].get("kind", "roofline")).kind != "profiled":
        return []
    from simulator.execution.profiled import MissingProfilesError, require_layer_ops

    first = next(iter(app["workloads"].values()))
    seen: set[tuple[str, int]] = set()
    missing = []
    for cand in space.candidates:
        if (cand.sku, cand.tp) in seen:
            continue
        seen.add((cand.sku, cand.tp))
        cfg = simulation_config(base_settings(app, first), cand, 1)
        try:
            require_layer_ops(cfg.execution.profiled, cfg.model, cfg.sku, cand.tp)
        except MissingProfilesError:
            if cfg.execution.profiled.require_profiles:
                raise
            missing.append(f"{cand.sku} TP{cand.tp}")
    return missing


def trial_context(app: dict[str, Any], name: str, prices: dict[str, float],
                  space: Space | None = None) -> TrialContext:
    """What every trial of workload ``name`` shares; with ``space``, the lookup-table
    range that covers all of its candidates (measured profiles, see ``execution_model``)."""
    cap = app["search"]["capacity"]
    return TrialContext(
        base=base_settings(app, app["workloads"][name]), workload_name=name,
        slo=Slo(**app["slo"]),
        capacity=CapacitySettings(precision=cap["precision"], min_qps=cap["min_qps"],
                                  max_qps=cap["max_qps"],
                                  max_simulations=cap["max_simulations"],
                                  min_requests=cap["min_requests_per_replica"],
                                  window_s=cap["window_s"]),
        requests_per_replica=cap["max_requests_per_replica"],
        replica_scaling=cap["replica_scaling"], prices=prices,
        max_trial_s=float(cap.get("max_trial_s", 0.0)),
        table_range=space.table_range() if space is not None else (0, 0, 0),
    )


class DefineByRun:
    """Optuna's define-by-run space. SKU and scheduler are categorical; TP, PP (replicas
    when they vary), batch cap and chunk size are ordinal indices into their sorted values,
    so TPE's Parzen estimators see that TP 4 lies between TP 2 and TP 8 (a categorical
    would treat every value as unrelated); the chunk size is sampled only for schedulers
    with a chunked token budget. A class (not a closure) because Ray pickles the searcher
    with the standard pickler when it checkpoints."""

    def __init__(self, space: Space) -> None:
        cands = space.candidates
        self.skus = sorted({c.sku for c in cands})
        self.scheds = sorted({c.scheduler for c in cands})
        self.tps = sorted({c.tp for c in cands})
        self.pps = sorted({c.pp for c in cands})
        self.caps = sorted({c.batch_cap for c in cands})
        self.chunks = sorted({c.chunk_size for c in cands if c.chunk_size})
        per_layout: dict[tuple[int, int], set[int]] = {}
        for c in cands:
            per_layout.setdefault((c.tp, c.pp), set()).add(c.replicas)
        varies = any(len(r) > 1 for r in per_layout.values())
        self.reps = sorted({c.replicas for c in cands}) if varies else []
        self.ep = len({c.ep > 1 for c in cands}) > 1  # sample EP only where it is a choice

    def __call__(self, trial: Any) -> None:
        trial.suggest_categorical("sku", self.skus)
        trial.suggest_int("tp_index", 0, len(self.tps) - 1)
        trial.suggest_int("pp_index", 0, len(self.pps) - 1)
        if self.reps:
            trial.suggest_int("replicas_index", 0, len(self.reps) - 1)
        sched = trial.suggest_categorical("scheduler", self.scheds)
        if self.ep:
            trial.suggest_categorical("expert_parallel", [False, True])
        trial.suggest_int("batch_cap_index", 0, len(self.caps) - 1)
        if sched in CHUNKED and self.chunks:
            trial.suggest_int("chunk_index", 0, len(self.chunks) - 1)

    def decode(self, p: dict[str, Any]) -> dict[str, Any]:
        """Sampled parameters -> what ``Space.nearest`` takes."""
        par = f"tp{self.tps[p['tp_index']]}-pp{self.pps[p['pp_index']]}"
        if self.reps:
            par += f"-r{self.reps[p['replicas_index']]}"
        chunk = self.chunks[p["chunk_index"]] if "chunk_index" in p else 0
        return {"sku": p["sku"], "parallel": par, "scheduler": p["scheduler"],
                "batch_cap": self.caps[p["batch_cap_index"]], "chunk_size": chunk,
                "expert_parallel": bool(p.get("expert_parallel", False))}

    def encode(self, c: Candidate) -> dict[str, Any]:
        """The sampled parameters that select candidate ``c`` (warm starts)."""
        p: dict[str, Any] = {"sku": c.sku, "tp_index": self.tps.index(c.tp),
                             "pp_index": self.pps.index(c.pp), "scheduler": c.scheduler,
                             "batch_cap_index": self.caps.index(c.batch_cap)}
        if self.reps:
            p["replicas_index"] = self.reps.index(c.replicas)
        if self.ep:
            p["expert_parallel"] = c.ep > 1
        if c.scheduler in CHUNKED and c.chunk_size:
            p["chunk_index"] = self.chunks.index(c.chunk_size)
        return p


def _resolve(config: dict[str, Any], space: Space, sampled: DefineByRun) -> Candidate:
    if "key" in config:
        return space.by_key()[config["key"]]
    return space.nearest(sampled.decode(config))


def _tune_metrics(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["ttft_objective"] = objective(row, "ttft_p90")
    out["tbt_objective"] = objective(row, "tbt_p99")
    for k, v in out.items():  # Tune's result handling chokes on inf in some paths
        if isinstance(v, float) and math.isinf(v):
            out[k] = 1e18
    return out


def make_trainable(ctx: TrialContext, space: Space, sampled: DefineByRun,
                   store: Any) -> Callable[[dict], None]:
    """The Ray Tune function trainable of one study: a candidate measured before (in this
    run or an earlier one) is answered from ``store``; a new row goes to ``store`` before
    Tune hears of it, so the driver writes it even if Tune never reports it."""

    def trainable(config: dict[str, Any]) -> None:
        import ray
        from ray import tune

        cand = _resolve(config, space, sampled)
        row = ray.get(store.get.remote(cand.key))
        if row is None:
            row = run_trial(ctx, cand)
            row["trial_id"] = f"{ctx.workload_name}-{tune.get_context().get_trial_id()}"
            ray.get(store.put.remote(cand.key, row))
        else:
            store.seen.remote(row)
        tune.report(_tune_metrics(row))

    return trainable


def _study_store(rows: dict[str, dict[str, Any]]) -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class StudyStore:
        """One study's finished trials by candidate key, shared by its workers, and the
        outbox the driver drains into ``trials.parquet``. Workers and Tune's callbacks
        talk to it wherever they run, so the same code records trials with an embedded
        Ray, on a cluster, and through Ray Client (where Tune's driver runs on the head
        node, not in this process)."""

        def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
            self.rows = rows
            self.outbox: list[tuple[dict[str, Any] | None, float]] = []

        def get(self, key: str) -> dict[str, Any] | None:
            return self.rows.get(key)

        def put(self, key: str, row: dict[str, Any]) -> None:
            """A newly measured trial: kept for later askers, queued for the table."""
            if key not in self.rows:
                self.rows[key] = row
                self.outbox.append((row, float(row.get("capacity_per_dollar") or 0.0)))
            else:
                self.seen(row)

        def seen(self, row: dict[str, Any]) -> None:
            """A trial answered from the cache: progress only, nothing to write."""
            self.outbox.append((None, float(row.get("capacity_per_dollar") or 0.0)))

        def failed(self, row: dict[str, Any]) -> None:
            """A trial whose worker died: written, not cached (a rerun may succeed)."""
            self.outbox.append((row, 0.0))

        def drain(self) -> list[tuple[dict[str, Any] | None, float]]:
            out, self.outbox = self.outbox, []
            return out

    return StudyStore.remote(rows)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence Tune's and Optuna's per-trial INFO chatter: the progress bar and the trials
    table say what happened (Tune's warnings about the per-trial result files it is told
    not to write included)."""
    import optuna

    names = ("ray.tune", "ray.train", "optuna")
    old = [logging.getLogger(n).level for n in names]
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        for n, level in zip(names, old, strict=True):
            logging.getLogger(n).setLevel(level)
        optuna.logging.set_verbosity(verbosity)


CLIENT_ATTEMPTS = 3


def _connect_client(address: str) -> None:
    """Connect through Ray Client, retrying: the head starts a server process for each
    client connection, and that start can fail transiently (seen on a loaded machine: the
    new server exited before the head checked it). Tune's driver then runs on the head, so
    it gets the same environment switches as this process."""
    import ray

    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address=address, log_to_driver=False,
                     runtime_env={"env_vars": RAY_ENV})
            return
        except ConnectionError as err:
            if attempt == CLIENT_ATTEMPTS:
                raise
            log.warning("Ray Client connection to %s failed (%s); retrying", address,
                        str(err).strip().splitlines()[-1] if str(err).strip() else err)
            time.sleep(2.0 * attempt)


def init_ray(ray_cfg: dict[str, Any]) -> int:
    """Start (or join) Ray; returns the CPUs it sees (the trial concurrency bound)."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    if not ray.is_initialized():
        address = str(ray_cfg.get("address") or "")
        if address.startswith("ray://"):
            _connect_client(address)
        elif address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=ray_cfg.get("num_cpus"), include_dashboard=False,
                     log_to_driver=False)
    return int(ray.cluster_resources().get("CPU", 1))


def optuna_storage(url: str) -> Any:
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url)


def study_trials(storage: Any, study_name: str) -> list[Any]:
    """Every trial of ``study_name`` in ``storage`` (none for a new study)."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


class Sweep:
    """One sweep over every workload of an experiment, writing ``out_dir/trials.parquet``."""

    def __init__(self, app: dict[str, Any], out_dir: Path, *, storage_url: str,
                 study_prefix: str, warm: pd.DataFrame | None = None,
                 progress: Any = None) -> None:
        from vidur_search.settings import prices

        self.app, self.out_dir = app, out_dir
        self.space = make_space(app)
        self.sampled = DefineByRun(self.space)  # the sampler's view of the space
        check_workloads(app, self.space)
        self.unprofiled = check_profiles(app, self.space)
        self.prices = prices(app)
        self.table = TrialsTable(out_dir / "trials.parquet")
        self.storage_url = storage_url
        self.study_prefix = study_prefix
        self.warm = warm
        self.progress = progress

    def plans(self) -> list[StudyPlan]:
        """Per workload: the finished trials and how many new ones the budget leaves."""
        import optuna

        out = []
        sampler = self.app["search"]["sampler"]
        storage = optuna_storage(self.storage_url) if sampler != "grid" else None
        for name in self.app["workloads"]:
            ctx = trial_context(self.app, name, self.prices, self.space)
            finished = self.table.done(name)
            study = f"{self.study_prefix}-{name}"
            if sampler == "grid":
                remaining = sum(1 for c in self.space.candidates if c.key not in finished)
                waiting: list[dict[str, Any]] = []
            else:
                trials = study_trials(storage, study)
                done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
                remaining = max(0, self.app["search"]["num_trials"] - done)
                # first points Tune's searcher enqueued and a killed sweep never ran: the
                # resumed study asks for them itself (enqueued again, each would run twice)
                waiting = [dict(t.system_attrs.get("fixed_params", {})) for t in trials
                           if t.state == optuna.trial.TrialState.WAITING]
            out.append(StudyPlan(name, ctx, finished, remaining, study,
                                 self._warm_points(name, ctx, finished, waiting)
                                 if remaining else []))
        return out

    def _warm_points(self, workload: str, ctx: TrialContext,
                     finished: dict[str, dict[str, Any]], waiting: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
        """The points the sampler measures first: the previous run's best plans (nightly
        warm start), then the fluid model's best candidates (``vidur_search.prior``);
        none already measured in this output folder or ``waiting`` in the study (a
        resumed sweep does not spend its budget on them again)."""
        search = self.app["search"]
        if search["sampler"] == "grid":
            return []
        first: list[Candidate] = []
        k = int(search.get("warm_start_points", 0))
        if self.warm is not None and k > 0:
            prev = self.warm[(self.warm["workload"] == workload)
                             & (self.warm["status"] == "ok")]
            prev = prev.sort_values("capacity_per_dollar", ascending=False)
            keys = self.space.by_key()
            first += [keys[key] for key in prev["key"] if key in keys][:k]
        k = int(search.get("prior_points", 0))
        if k > 0:
            from vidur_search.prior import prior_points, rank_candidates

            t0 = time.perf_counter()
            ranked = rank_candidates(ctx, self.space.candidates)
            chosen = prior_points(ranked, k)
            self._say(f"{workload}: fluid model ranked {len(ranked)} candidates in "
                      f"{time.perf_counter() - t0:.1f} s; measuring its {len(chosen)} best "
                      "first")
            first += [c for c in chosen if c not in first]
        points = [self.sampled.encode(c) for c in first if c.key not in finished]
        return [p for p in points if p not in waiting]

    def run(self) -> pd.DataFrame:
        """Run every study; returns the whole trials table (this run's and earlier rows)."""
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch

        cpus = init_ray(self.app["ray"])
        per_trial = float(self.app["ray"]["cpus_per_trial"])
        concurrency = max(1, int(cpus // per_trial))
        reuse = bool(self.app["ray"].get("reuse_actors", True))
        search = self.app["search"]
        if self.unprofiled:
            fb = self.app["execution"].get("profiled", {}).get("fallback", "roofline")
            self._say(f"execution: no measured profiles for {', '.join(self.unprofiled)}: "
                      f"those trials run on the {fb} model (trials column `execution`)")
        for plan in self.plans():
            if plan.remaining <= 0:
                self._say(f"{plan.workload}: nothing left to run "
                          f"({len(plan.finished)} trials already finished)")
                continue
            store = _study_store(plan.finished)
            trainable = tune.with_resources(make_trainable(plan.ctx, self.space,
                                                           self.sampled, store),
                                            {"cpu": per_trial})
            if search["sampler"] == "grid":
                keys = [c.key for c in self.space.candidates if c.key not in plan.finished]
                param_space: dict[str, Any] = {"key": tune.grid_search(keys)}
                tune_cfg = tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency,
                                           reuse_actors=reuse)
            else:
                param_space = {}
                tune_cfg = tune.TuneConfig(
                    search_alg=self._searcher(plan, OptunaSearch),
                    num_samples=plan.remaining, max_concurrent_trials=concurrency,
                    reuse_actors=reuse)
            self._say(f"{plan.workload}: {plan.remaining} trials on {concurrency} "
                      f"concurrent workers ({search['sampler']})")
            with quiet_logs(), _TableWriter(self, plan, store) as writer:
                run_cfg = tune.RunConfig(
                    name=f"{plan.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                    storage_path=str((self.out_dir / "ray").resolve()),
                    callbacks=[_drain_on_result_callback(writer),
                               _failed_trials_callback()(store, plan.ctx, self.space,
                                                         self.sampled)],
                    verbose=0, log_to_file=False,
                )
                tune.Tuner(trainable, param_space=param_space, tune_config=tune_cfg,
                           run_config=run_cfg).fit()
        return self.table.frame()

    def _searcher(self, plan: StudyPlan, optuna_search: type) -> Any:
        import optuna

        search = self.app["search"]
        seed = search.get("sampler_seed")
        seed = int(self.app["seed"] if seed is None else seed)
        if search["sampler"] == "nsga2":
            pop = max(4, min(50, search["num_trials"] // 4))
            sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
            metric, mode = NSGA_METRICS, NSGA_MODES
        else:
            startup = max(3, min(10, search["num_trials"] // 4))
            # multivariate: SKU, layout, scheduler and batch cap interact (a layout good
            # on one SKU is not on another); constant liar: parallel workers do not all
            # ask for the same point while the first is still running
            with warnings.catch_warnings():  # "group is experimental": known, chosen
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                                     multivariate=True, group=True,
                                                     constant_liar=True)
            metric, mode = "capacity_per_dollar", "max"
        return optuna_search(
            space=self.sampled, metric=metric, mode=mode, sampler=sampler,
            study_name=plan.study_name, storage=optuna_storage(self.storage_url),
            points_to_evaluate=plan.warm_points or None,
        )

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress.console.print(msg)
        else:
            print(msg)


class _TableWriter:
    """While a study runs, a driver thread (and, where Tune's driver runs in this
    process, Tune's result callback at once) drains the study's store into
    ``trials.parquet`` (each trial written as it finishes) and drives the progress bar;
    leaving the ``with`` block drains what is left."""

    POLL_S = 0.2

    def __init__(self, sweep: Sweep, plan: StudyPlan, store: Any) -> None:
        self.sweep, self.plan, self.store = sweep, plan, store
        self.best, self.done = 0.0, 0
        self.pending: list[tuple[dict[str, Any] | None, float]] = []
        self.lock = threading.Lock()  # the poll thread and Tune's result callback
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.task = None
        if sweep.progress is not None:
            self.task = sweep.progress.add_task(plan.workload, total=plan.remaining)

    def __enter__(self) -> _TableWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        try:
            self._drain()
        except Exception:
            if exc[0] is None:  # else keep the error that ended the study
                raise
            log.exception("could not write the last trials to %s", self.sweep.table.path)

    def _loop(self) -> None:
        while not self.stop.wait(self.POLL_S):
            try:
                self._drain()
            except Exception:  # kept in self.pending; retried at the next poll
                log.exception("could not write trials to %s (will retry)",
                              self.sweep.table.path)

    def _drain(self) -> None:
        """Take the store's new events, then write them; an event leaves ``pending`` only
        once written, so a failed write loses nothing."""
        import ray

        with self.lock:
            self._write_events(ray.get(self.store.drain.remote()))

    def _write_events(self, events: list[tuple[dict[str, Any] | None, float]]) -> None:
        self.pending += events
        if not self.pending:
            return
        while self.pending:
            row, value = self.pending[0]
            if row is not None:
                self.sweep.table.append(row)
            self.pending.pop(0)
            self.best = max(self.best, value)
            self.done += 1
        if self.task is not None:
            self.sweep.progress.update(
                self.task, completed=self.done,
                description=f"{self.plan.workload} best {self.best:.3g} QPS per $/h")


def _drain_on_result_callback(writer: _TableWriter) -> Any:
    """A Tune callback that writes a trial's row when Tune receives its result, i.e.
    before the Optuna searcher records the trial as complete, so a kill between the two
    cannot leave a completed trial without its row. It runs where Tune's driver runs: in
    this process it drains at once; pickled (Tune checkpoints its callbacks; Ray Client
    runs them on the head) it becomes a plain no-op callback and the poll thread does the
    work."""
    from ray.tune import Callback

    class DrainOnResult(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            try:
                writer._drain()
            except Exception:  # kept pending; the poll thread retries
                log.exception("could not write trials to %s (will retry)",
                              writer.sweep.table.path)

        def __reduce__(self) -> tuple:
            return (Callback, ())

    return DrainOnResult()


def _failed_trials_callback() -> type:
    from ray.tune import Callback

    from vidur_search.trial import failed_row

    class FailedTrials(Callback):
        """A Tune callback for trials whose worker died (a trial that raises is a row
        already, see ``run_trial``): the failure goes to the study's store, which
        the driver writes. It holds only picklable state, because under Ray Client Tune
        runs its driver, callbacks included, on the cluster's head node."""

        def __init__(self, store: Any, ctx: TrialContext, space: Space,
                     sampled: DefineByRun) -> None:
            self.store, self.ctx, self.space, self.sampled = store, ctx, space, sampled

        def on_trial_error(self, iteration: int, trials: list, trial: Any,
                           **info: Any) -> None:
            import ray

            cand = _resolve(trial.config, self.space, self.sampled)
            err = str(trial.get_error() or "worker died").strip()
            row = failed_row(self.ctx, cand, err.splitlines()[-1] if err else "worker died")
            row["trial_id"] = f"{self.ctx.workload_name}-{trial.trial_id}"
            # waited for: under Ray Client this runs on the head, and the command's last
            # drain must find the row
            ray.get(self.store.failed.remote(row))

    return FailedTrials
