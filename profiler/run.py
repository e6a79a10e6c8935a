"""Profiler orchestration: config, plan, run-time estimate, measurements, profile store.

``run(ProfilerConfig(model="llama-3-8b", tp=(1, 2)), out="profiles")`` builds, for each TP
degree, one decoder layer of the model sharded for that degree (``profiler.layer``), times
every operator on its grid (``profiler.grids``) with ``profiler.timing``, and saves one
Parquet file per family through ``simulator.profiles.ProfileStore``. Collectives run in
``torch.distributed`` worker processes (NCCL, one per GPU) when several GPUs are present.

Without CUDA the same code runs on the CPU with a tiny stand-in model (``layer.tiny_spec``)
recorded as model ``tiny-<name>`` with device ``cpu``; a tiny profile can therefore never
be mistaken for the real model's, and the store validates its rows against the tiny shape
it records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from profiler.grids import Grid, GridConfig, Rates, estimate_seconds, format_seconds
from profiler.layer import DecoderLayer, LayerShape, tiny_spec
from profiler.timing import CUDA_MODES, Timer, stats
from simulator.catalogue import load_catalogue
from simulator.catalogue.specs import ModelSpec
from simulator.errors import ConfigError, one_of
from simulator.memory import weight_bytes_per_gpu
from simulator.paths import check_output_dir
from simulator.profiles import ProfileMeta, ProfileStore, model_shape_of

FAMILIES = ("attention_prefill", "attention_decode", "layer_ops", "collective")
COLLECTIVE_OPS = ("all_reduce", "all_gather", "send_recv")
# Device names (torch.cuda.get_device_name) -> catalogue SKU; first match wins.
SKU_PATTERNS = (("H200", "h200"), ("B200", "b200"), ("H100 PCIe", ""), ("H100 NVL", ""),
                ("H100", "h100-sxm"), ("L40S", "l40s"), ("A10G", "a10g"))
Echo = Callable[[str], None]


@dataclass(frozen=True)
class ProfilerConfig:
    """One profiler run: a catalogue model at one or more TP degrees.

    ``device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    ``tiny``: ``auto`` (tiny exactly when the device is the CPU), ``true`` or ``false``.
    ``collectives``: ``auto`` (when more than one CUDA GPU is present), ``on`` (also on the
    CPU, over gloo with ``collective_gpus`` processes) or ``off``.
    """

    model: str
    tp: tuple[int, ...] = (1,)
    out: str = "profiles"
    device: str = "auto"
    tiny: str = "auto"
    families: tuple[str, ...] = FAMILIES
    attention: str = "auto"  # auto | sdpa | flash_attn
    collectives: str = "auto"  # auto | on | off
    collective_gpus: int = 0  # 0 = 2, 4, 8 up to the GPUs present (CPU: 2 processes)
    sku: str = ""  # "" = detect from the GPU name
    node: str = ""  # "" = the SKU's default node (collectives)
    catalogue: str = ""  # directory of user YAML merged over the built-in catalogue
    seed: int = 0
    timing: str = "graph"  # CUDA timing mode: graph | queue | eager (profiler.timing)
    dry_run: bool = False
    plan_for: str = ""  # with dry_run: plan and estimate for this catalogue SKU instead
    progress: bool = True
    grid: GridConfig = field(default_factory=GridConfig)

    def __post_init__(self) -> None:
        cat = load_catalogue(self.catalogue or None)
        spec = cat.model(self.model)
        if not isinstance(self.tp, tuple) or not self.tp:
            raise ConfigError("tp", self.tp, "must be a non-empty list of integers")
        for tp in self.tp:
            LayerShape.from_spec(spec, tp)
        one_of("tiny", self.tiny, ("auto", "true", "false"))
        one_of("attention", self.attention, ("auto", "sdpa", "flash_attn"))
        one_of("collectives", self.collectives, ("auto", "on", "off"))
        one_of("timing", self.timing, CUDA_MODES)
        if not self.families:
            raise ConfigError("families", ",".join(self.families), "must name at least one "
                              "family; allowed values are " + ", ".join(FAMILIES))
        for fam in self.families:
            one_of("families", fam, FAMILIES)
        ok = self.device in ("auto", "cpu", "cuda") or (
            self.device.startswith("cuda:") and self.device[5:].isdigit())
        if not ok:
            raise ConfigError("device", self.device, "allowed values are auto, cpu, cuda, cuda:N")
        for name in ("collective_gpus", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(name, v, "must be an integer >= 0")
        if self.collective_gpus == 1:
            raise ConfigError("collective_gpus", 1, "must be 0 (all) or >= 2")
        if not self.out:
            raise ConfigError("out", self.out, "must be a directory path")
        for name in ("sku", "plan_for"):
            if getattr(self, name):
                one_of(name, getattr(self, name), cat.skus)
        if self.node and self.device != "cpu" and self.node != "cpu":  # on CPU: a label
            one_of("node", self.node, cat.nodes)
            sku = self.plan_for or self.sku
            if sku and cat.nodes[self.node].sku != sku:
                raise ConfigError("node", self.node,
                                  f"holds {cat.nodes[self.node].sku} GPUs, not {sku}; nodes "
                                  f"for {sku}: {', '.join(cat.nodes_for(sku))}")
        if self.plan_for and not self.dry_run:
            raise ConfigError("plan_for", self.plan_for, "only with dry_run=true (it plans "
                              "for another device without measuring)")

    @property
    def spec(self) -> ModelSpec:
        return load_catalogue(self.catalogue or None).model(self.model)


# --------------------------------------------------------------------------- CLI parsing

_BOOL = {"true": True, "1": True, "yes": True, "on": True,
         "false": False, "0": False, "no": False, "off": False}
_LIST_INT = ("tp", "prefill_batch")
_LIST_STR = ("families",)
_EXAMPLES = {"tp": "1,2,4,8", "prefill_batch": "1,2,4", "families": "layer_ops,collective"}


def _list(key: str, text: str, what: str) -> list[str]:
    """The entries of a comma-separated list; ConfigError naming ``key`` for an empty
    entry (``1,,2``, a trailing comma) or an entry given twice. An empty text is an empty
    list (ProfilerConfig says what the key needs)."""
    if not text.replace(" ", ""):
        return []
    parts = [p.strip() for p in text.split(",")]
    for i, part in enumerate(parts):
        if not part:
            raise ConfigError(key, text, f"entry {i + 1} of the list is empty; give "
                              f"comma-separated {what} with no empty entries, e.g. "
                              f"{key}={_EXAMPLES[key]}")
    for i, part in enumerate(parts):
        if part in parts[:i]:
            raise ConfigError(key, text, f"{part} is listed twice; give each of the "
                              f"comma-separated {what} once")
    return parts


def _convert(key: str, text: str, kind: Any) -> Any:
    if key in _LIST_INT:
        parts = _list(key, text, "integers")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise ConfigError(key, text, "must be a comma-separated list of integers") from None
        if len(set(values)) < len(values):  # 1,01
            raise ConfigError(key, text, "lists a value twice; give each of the "
                              "comma-separated integers once")
        return values
    if key in _LIST_STR:
        return tuple(_list(key, text, "names"))
    if kind is bool:
        if text.lower() not in _BOOL:
            raise ConfigError(key, text, "must be true or false")
        return _BOOL[text.lower()]
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(key, text, "must be an integer") from None
    return text


def _field_kinds(cls: type) -> dict[str, Any]:
    kinds = {"int": int, "bool": bool, "str": str}
    return {f.name: kinds.get(str(f.type), str) for f in dataclasses.fields(cls)}


def parse_args(argv: Sequence[str]) -> ProfilerConfig:
    """``key=value`` arguments (Hydra style) -> ProfilerConfig; ConfigError names the key.

    Keys are ProfilerConfig's fields and GridConfig's (flat, e.g. ``tokens_max=4096``);
    lists are comma-separated (``tp=1,2,4,8``). A key given twice, and an empty or
    repeated list entry, are errors naming the key.
    """
    top = _field_kinds(ProfilerConfig)
    top.pop("grid")
    grid_kinds = _field_kinds(GridConfig)
    allowed = [*top, *grid_kinds]
    top_args: dict[str, Any] = {}
    grid_args: dict[str, Any] = {}
    given: dict[str, str] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        key = key.strip().lstrip("+")
        if not sep:
            raise ConfigError(arg, "", "arguments are key=value; keys: " + ", ".join(allowed))
        if key in given:
            raise ConfigError(key, text.strip(), f"is given twice ({key}={given[key]} and "
                              f"{key}={text.strip()}); give each key once")
        given[key] = text.strip()
        if key in top:
            top_args[key] = _convert(key, text.strip(), top[key])
        elif key in grid_kinds:
            grid_args[key] = _convert(key, text.strip(), grid_kinds[key])
        else:
            raise ConfigError(key, text, "unknown key; allowed keys: " + ", ".join(allowed))
    if "model" not in top_args:
        names = ", ".join(load_catalogue(top_args.get("catalogue") or None).models)
        raise ConfigError("model", None, f"is required; allowed values are {names}")
    return ProfilerConfig(grid=GridConfig(**grid_args), **top_args)


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class Environment:
    """Where the measurements run, as the profile metadata records it."""

    device: torch.device
    label: str  # catalogue SKU name or "cpu"
    node: str  # catalogue node name ("cpu" on the CPU)
    name: str  # human-readable device name
    gpus: int  # CUDA devices present
    memory_bytes: int
    driver: str
    cuda: str
    torch: str
    date: str


def _driver_version() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if lines else ""


def detect_sku(name: str, memory_bytes: int) -> str:
    """Catalogue SKU of a CUDA device name ("" when the catalogue has no such SKU)."""
    if "A100" in name:
        return "a100-80gb" if memory_bytes > 50e9 else "a100-40gb"
    for pattern, sku in SKU_PATTERNS:
        if pattern in name:
            return sku
    return ""


def environment(cfg: ProfilerConfig) -> Environment:
    """The device of ``cfg`` and its catalogue SKU, node and software versions (with
    ``plan_for``: that SKU, as a single GPU, without touching any device)."""
    cat = load_catalogue(cfg.catalogue or None)
    date = dt.datetime.now(dt.UTC).date().isoformat()
    if cfg.plan_for:
        sku = cat.sku(cfg.plan_for)
        return Environment(torch.device("cuda"), sku.name, cfg.node or cat.default_node_for(
            sku.name), f"{sku.name}, planned", cfg.collective_gpus or 1,
            int(sku.memory_bytes), "", "", torch.__version__, date)
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", cfg.device, "CUDA is not available here; use device=cpu")
    device = torch.device(want)
    if device.type == "cpu":
        import platform

        return Environment(device, "cpu", cfg.node or "cpu", platform.processor() or "cpu",
                           0, 0, "", "", torch.__version__, date)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    sku = cfg.sku or detect_sku(props.name, props.total_memory)
    if not sku:
        raise ConfigError("sku", props.name, "no catalogue SKU matches this GPU; pass "
                          "sku=<name> (" + ", ".join(cat.skus) + ")")
    one_of("sku", sku, cat.skus)
    node = cfg.node or cat.default_node_for(sku)
    if cat.node(node).sku != sku:
        raise ConfigError("node", node, f"holds {cat.node(node).sku} GPUs, not this GPU's "
                          f"{sku}; nodes for {sku}: {', '.join(cat.nodes_for(sku))}")
    return Environment(device, sku, node, props.name, torch.cuda.device_count(),
                       props.total_memory, _driver_version(), torch.version.cuda or "",
                       torch.__version__, date)


def device_rates(env: Environment, cat_sku: Any | None) -> Rates:
    """Per-call cost model of the device for the estimate (CPU: a quick calibration)."""
    if env.device.type == "cuda":
        flops = (cat_sku.bf16_tflops if cat_sku else 989.0) * 1e12 * 0.6
        bw = (cat_sku.mem_bw_gbps if cat_sku else 3350.0) * 1e9 * 0.7
        return Rates(flops, bw, call_s=5e-6, point_s=8e-3, setup_s=10.0)
    a = torch.randn(256, 512, dtype=torch.bfloat16)
    b = torch.randn(512, 512, dtype=torch.bfloat16)
    x = torch.randn(1 << 20)
    t = Timer(env.device, warmup=1, repeats=3)
    mm = stats(t.samples(lambda: a @ b))["median_us"] * 1e-6
    cp = stats(t.samples(x.clone))["median_us"] * 1e-6
    one = torch.ones(1)
    call = stats(t.samples(lambda: one + one))["median_us"] * 1e-6
    return Rates(2 * 256 * 512 * 512 / mm, 8 * (1 << 20) / cp,
                 call_s=max(call, 5e-6) * 3, point_s=5e-4, setup_s=0.5)


# --------------------------------------------------------------------------- planning


@dataclass
class TpPlan:
    """Everything measured for one TP degree."""

    tp: int
    shape: LayerShape
    grid: Grid
    prefill: list[tuple[int, int, int]]
    decode: list[tuple[int, int]]
    decode_skipped: int
    ops: list[tuple[str, int]]

    @property
    def points(self) -> int:
        return len(self.prefill) + len(self.decode) + len(self.ops)

    def costs(self) -> list[tuple[float, float]]:
        """(FLOPs, bytes) of one call at each point, in measurement order."""
        s = self.shape
        out = [s.attention_cost(b * c, b * c * (p + (c + 1) / 2), b * (p + c))
               for b, c, p in self.prefill]
        out += [s.attention_cost(b, b * kv, b * kv) for b, kv in self.decode]
        out += [s.op_cost(op, t) for op, t in self.ops]
        return out


def kv_tokens_cap(spec: ModelSpec, shape: LayerShape, env: Environment, grid: GridConfig,
                  tiny: bool) -> int:
    """Default ``kv_tokens_max``: KV tokens one layer's attention can read on this device.

    On CUDA: what the engine could cache with the whole model's weights resident
    (90% of memory), and at most what 40% of memory holds for one layer's K and V.
    """
    per_token = shape.kv_bytes_per_token()
    if env.device.type == "cpu":
        if tiny:
            return max(grid.batch_max or 16, 1) * max(grid.kv_max or spec.max_context, 1)
        return int(2 * 2**30 // per_token)
    alloc = int(0.4 * env.memory_bytes // per_token)
    free = 0.9 * env.memory_bytes - weight_bytes_per_gpu(spec, shape.tp, 1)
    engine = int(free // (per_token * spec.num_layers)) if free > 0 else 0
    return min(engine, alloc) if engine > 0 else alloc


def plan_tp(spec: ModelSpec, run_spec: ModelSpec, tp: int, cfg: ProfilerConfig,
            env: Environment, tiny: bool) -> TpPlan:
    """Grid points of every requested family at one TP degree."""
    shape = LayerShape.from_spec(run_spec, tp)
    cap = kv_tokens_cap(run_spec, shape, env, cfg.grid, tiny)
    grid = cfg.grid.resolve(context=run_spec.max_context, tiny=tiny, kv_tokens_cap=cap)
    fams = cfg.families
    prefill = grid.prefill_points() if "attention_prefill" in fams else []
    decode, skipped = grid.decode_points() if "attention_decode" in fams else ([], 0)
    ops = grid.op_points(shape.ops) if "layer_ops" in fams else []
    return TpPlan(tp, shape, grid, prefill, decode, skipped, ops)


def collective_worlds(cfg: ProfilerConfig, env: Environment) -> list[int]:
    """Process-group sizes to measure collectives over ([] = skip)."""
    if "collective" not in cfg.families or cfg.collectives == "off":
        return []
    if env.device.type == "cpu":
        return [cfg.collective_gpus or 2] if cfg.collectives == "on" else []
    if env.gpus < 2:
        return []
    if cfg.collective_gpus:
        if cfg.collective_gpus > env.gpus:
            raise ConfigError("collective_gpus", cfg.collective_gpus,
                              f"must be <= the {env.gpus} GPUs present")
        return [cfg.collective_gpus]
    return [n for n in (2, 4, 8) if n <= env.gpus]


# --------------------------------------------------------------------------- progress


class Progress:
    """A text progress bar on stderr (one line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._shown = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        frac = min(self.done / self.total, 1.0)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {frac:4.0%} "
                f"elapsed {format_seconds(elapsed)} eta {format_seconds(eta)}")
        if self.tty:
            sys.stderr.write("\r" + line)
            if self.done >= self.total:
                sys.stderr.write("\n")
        elif int(frac * 10) > self._shown:
            self._shown = int(frac * 10)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- measuring


def _oom_errors() -> tuple[type[BaseException], ...]:
    err = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError",
                                                               None)
    return (err,) if err is not None else ()


FamilyDone = Callable[[str, pd.DataFrame, str], None]


def measure_tp(plan: TpPlan, env: Environment, cfg: ProfilerConfig,
               progress: Progress, done: FamilyDone | None = None
               ) -> tuple[dict[str, pd.DataFrame], str, int, dict[str, float]]:
    """Time every point of ``plan``: family -> rows, the attention used, points left out
    for lack of device memory, and family -> seconds spent. ``done(family, rows,
    attention)`` is called as soon as each family is measured (to save it at once)."""
    s = plan.shape
    layer = DecoderLayer(s, env.device, seed=cfg.seed, attention=cfg.attention)
    timer = Timer(env.device, plan.grid.warmup, plan.grid.repeats, cuda_mode=cfg.timing)
    heads = {"n_q_heads": s.q_heads, "n_kv_heads": s.kv_heads, "head_dim": s.head_dim}
    rows: dict[str, list[dict[str, Any]]] = {f: [] for f in FAMILIES}
    seconds = dict.fromkeys(FAMILIES, 0.0)
    oom = _oom_errors()
    skipped = 0

    def point(family: str, key: dict[str, Any], make: Callable[[], Callable[[], Any]],
              capturable: bool = True) -> None:
        nonlocal skipped
        t0 = time.perf_counter()
        try:
            fn = make()
            st = timer.measure(fn, capturable)
            rows[family].append({**key, **st, "timing": timer.mode})
        except oom:
            skipped += 1
            torch.cuda.empty_cache()
        seconds[family] += time.perf_counter() - t0
        progress.update()

    def finished(family: str) -> None:
        if done is not None and rows[family]:
            done(family, pd.DataFrame(rows[family]), layer.attn.description)

    with torch.inference_mode():
        for b, c, p in plan.prefill:
            point("attention_prefill",
                  {**heads, "batch_size": b, "chunk_tokens": c, "prior_kv": p},
                  lambda b=b, c=c, p=p: layer.prefill_fn(b, c, p))
        finished("attention_prefill")
        for b, kv in plan.decode:
            point("attention_decode", {**heads, "batch_size": b, "kv_len": kv},
                  lambda b=b, kv=kv: layer.decode_fn(b, kv))
        finished("attention_decode")
        for op, t in plan.ops:
            n, k = s.op_dims(op)
            moe = op == "moe_experts"
            point("layer_ops", {"op": op, "num_tokens": t, "n": n, "k": k,
                                "experts": s.experts if moe else 0,
                                "topk": s.topk if moe else 0},
                  lambda op=op, t=t: layer.op_fn(op, t))
        finished("layer_ops")
    described = layer.attn.description
    frames = {f: pd.DataFrame(r) for f, r in rows.items() if r}
    timing = {f: seconds[f] for f in frames}
    return frames, described, skipped, timing


def _collective_worker(rank: int, world: int, init_file: str, backend: str, sizes: list[int],
                       warmup: int, repeats: int, out_dir: str) -> None:
    """One rank of a collective benchmark; writes its samples to ``out_dir/rank<r>.json``."""
    import torch.distributed as dist

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    timer = Timer(device, warmup, repeats)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for op in COLLECTIVE_OPS:
            if op == "send_recv" and world != 2:
                continue
            for size in sizes:
                numel = max(1, size // 2)
                if op == "all_gather":
                    numel = max(1, numel // world)
                buf = torch.ones(numel, dtype=torch.bfloat16, device=device)
                if op == "all_reduce":
                    def fn(buf: torch.Tensor = buf) -> Any:
                        return dist.all_reduce(buf)
                elif op == "all_gather":
                    out = torch.empty(numel * world, dtype=torch.bfloat16, device=device)

                    def fn(buf: torch.Tensor = buf, out: torch.Tensor = out) -> Any:
                        return gather(out, buf)
                elif rank == 0:
                    def fn(buf: torch.Tensor = buf) -> Any:
                        return dist.send(buf, 1)
                else:
                    def fn(buf: torch.Tensor = buf) -> Any:
                        return dist.recv(buf, 0)
                dist.barrier()
                results.append({"op": op, "size_bytes": numel * 2 * (world if op == "all_gather"
                                                                      else 1),
                                "samples": timer.samples(fn)})
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def measure_collectives(worlds: list[int], env: Environment, grid: Grid,
                        progress: Progress) -> pd.DataFrame:
    """All-reduce, all-gather (and send/recv between 2 ranks) for each group size.

    Each repeat's time is the slowest rank's; ``size_bytes`` is the buffer all-reduced,
    the gathered output, or the message sent.
    """
    import torch.multiprocessing as mp

    backend = "nccl" if env.device.type == "cuda" else "gloo"
    rows = []
    for world in worlds:
        with tempfile.TemporaryDirectory(prefix="vidur_collectives_") as tmp:
            mp.spawn(_collective_worker, nprocs=world, join=True,
                     args=(world, os.path.join(tmp, "init"), backend, grid.collective_sizes,
                           grid.warmup, grid.repeats, tmp))
            per_rank = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
        for i, first in enumerate(per_rank[0]):
            samples = [max(rank[i]["samples"][j] for rank in per_rank)
                       for j in range(len(first["samples"]))]
            rows.append({"op": first["op"], "num_gpus": world,
                         "gpus_per_node": max(env.gpus, world),
                         "size_bytes": first["size_bytes"], **stats(samples)})
        progress.update()
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the run


def _meta(family: str, env: Environment, model: str, tp: int, shape: dict,
          origin: str) -> ProfileMeta:
    return ProfileMeta(family=family, source="measured", device=env.label, model=model,
                       tp=tp, dtype="bf16", model_shape=shape, driver=env.driver,
                       cuda=env.cuda, torch=env.torch, date=env.date, origin=origin)


class SaveFailed(RuntimeError):
    """Some measured profiles could not be written under ``out``; they were kept elsewhere."""


class _Saver:
    """Writes each measured table as soon as it is ready. A table that cannot be written
    under ``out`` (disk full, permissions changed mid-run, ...) is kept in a rescue
    directory instead, so that no measurement is lost; ``finish`` then raises SaveFailed."""

    def __init__(self, out: str, echo: Echo) -> None:
        self.store = ProfileStore(out)
        self.echo = echo
        self.written: list[Path] = []
        self.rescued: list[tuple[Path | str, str]] = []  # (where the rows are, why)
        self._rescue: Path | None = None

    def save(self, df: pd.DataFrame, meta: ProfileMeta) -> None:
        try:
            self.written.append(self.store.save(df, meta))
            return
        except (OSError, ConfigError) as err:
            why = str(err)
        rel = self.store.path_for(meta).relative_to(self.store.root)
        kept: Path | str = "nowhere"
        try:
            if self._rescue is None:
                self._rescue = Path(tempfile.mkdtemp(prefix="vidur_profiler_rescue_"))
            try:
                kept = ProfileStore(self._rescue).save(df, meta)
            except ConfigError:  # rows the store refuses: keep them as they are, meta beside
                kept = self._rescue / rel
                kept.parent.mkdir(parents=True, exist_ok=True)
                df.to_parquet(kept)
                kept.with_suffix(".meta.json").write_text(meta.to_json())
                why += (" (the store refuses these rows: kept as plain Parquet, metadata "
                        "in .meta.json)")
        except OSError as err:
            why += f" (keeping them elsewhere failed too: {err})"
        self.rescued.append((kept, why))
        self.echo(f"  could not write {self.store.root / rel}: {why}; the measured "
                  f"{meta.family} rows are kept in {kept}")

    def finish(self) -> None:
        if self.rescued:
            raise SaveFailed(
                f"{len(self.rescued)} measured profile(s) could not be written under "
                f"{self.store.root} and were kept instead in {self._rescue} (the store's "
                f"layout: move its profile files into place; plain Parquet with .meta.json "
                f"holds rows the store refused): " + "; ".join(why for _, why in self.rescued))


def run(cfg: ProfilerConfig, echo: Echo = print) -> list[Path]:
    """Plan, estimate, measure and save; returns the profile files written.

    ``out`` is checked (a directory that exists or can be created, and accepts files)
    before anything is measured; each family's file is written as soon as it is measured.
    """
    if not cfg.dry_run:
        check_output_dir("out", cfg.out)
    env = environment(cfg)
    tiny = cfg.tiny == "true" or (cfg.tiny == "auto" and env.device.type == "cpu")
    spec = cfg.spec
    run_spec = tiny_spec(spec) if tiny else spec
    model = f"tiny-{spec.name}" if tiny else spec.name
    cat = load_catalogue(cfg.catalogue or None)
    sku = cat.skus.get(env.label)
    plans = [plan_tp(spec, run_spec, tp, cfg, env, tiny) for tp in cfg.tp]
    worlds = collective_worlds(cfg, env)

    echo(f"profiler: {model} on {env.label} ({env.name}), tp={','.join(map(str, cfg.tp))}, "
         f"bf16, torch {env.torch}" + (f", CUDA {env.cuda}, driver {env.driver}"
                                        if env.cuda else ""))
    if tiny:
        echo(f"  tiny stand-in for {spec.name}: hidden {run_spec.hidden_size}, heads "
             f"{run_spec.num_heads}/{run_spec.num_kv_heads} kv, head_dim {run_spec.head_size},"
             f" ffn {run_spec.ffn_size}, vocab {run_spec.vocab_size}, context "
             f"{run_spec.max_context}; recorded as model {model}")
    rates = device_rates(env, sku)
    total_est = 0.0
    for p in plans:
        est = estimate_seconds(p.costs(), p.grid.warmup + p.grid.repeats, rates)
        total_est += est
        g = p.grid
        echo(f"  tp={p.tp}: {len(p.prefill)} prefill + {len(p.decode)} decode "
             f"({p.decode_skipped} over kv_tokens_max={g.kv_tokens_max}) + {len(p.ops)} op "
             f"points; tokens 1..{g.tokens[-1]} ({len(g.tokens)}), batch 1..{g.batches[-1]} "
             f"({len(g.batches)}), kv {g.kvs[0]}..{g.kvs[-1]} ({len(g.kvs)}); "
             f"{g.warmup} warm-up + {g.repeats} repeats; ~{format_seconds(est)}")
    if "collective" in cfg.families:
        if worlds:
            g = plans[0].grid
            n_sizes = len(g.collective_sizes)
            coll = [(0.0, float(sz)) for _op in COLLECTIVE_OPS for sz in g.collective_sizes]
            link = Rates(1.0, (sku.link_bw_gbps * 1e9 * 0.7) if sku else 1e9, 20e-6, 2e-3,
                         setup_s=15.0 if env.gpus else 3.0)  # process group start-up
            est = estimate_seconds(coll, g.warmup + g.repeats, link) * len(worlds)
            total_est += est
            echo(f"  collectives over {', '.join(map(str, worlds))} "
                 f"{'GPUs' if env.gpus else 'gloo processes'}: {n_sizes} sizes "
                 f"{g.collective_sizes[0]}..{g.collective_sizes[-1]} B; ~{format_seconds(est)}")
        elif env.device.type == "cuda":
            echo(f"  collectives skipped: {env.gpus} GPU present (all-reduce and send/recv "
                 "need at least 2)")
        else:
            echo("  collectives skipped: no GPU (collectives=on measures them over gloo)")
    echo(f"Estimated run time: {format_seconds(total_est)}")
    if cfg.dry_run:
        return []

    saver = _Saver(cfg.out, echo)
    written = saver.written
    t0 = time.perf_counter()
    total_points = sum(p.points for p in plans) + len(worlds)
    progress = Progress(total_points, "profiling", cfg.progress)
    for p in plans:
        def save(family: str, df: pd.DataFrame, attn: str, tp: int = p.tp) -> None:
            origin = (f"vidur_search profiler (python -m profiler); attention={attn}"
                      + (f"; tiny stand-in of {spec.name}" if tiny else ""))
            saver.save(df, _meta(family, env, model, tp, model_shape_of(run_spec), origin))

        frames, _attn, oom, spent = measure_tp(p, env, cfg, progress, save)
        echo(f"  tp={p.tp} measured: " + ", ".join(
            f"{fam} {len(frames[fam])} points in {format_seconds(sec)}"
            for fam, sec in spent.items()))
        if env.device.type == "cuda":
            torch.cuda.empty_cache()  # the layer of this TP degree is gone
        if oom:
            echo(f"  tp={p.tp}: {oom} points ran out of device memory and were left out")
    if worlds:
        df = measure_collectives(worlds, env, plans[0].grid, progress)
        meta = ProfileMeta(family="collective", source="measured", device=env.label, model="",
                           tp=1, node=env.node, driver=env.driver, cuda=env.cuda,
                           torch=env.torch, date=env.date,
                           origin=f"vidur_search profiler; torch.distributed "
                                  f"{'nccl' if env.gpus else 'gloo'}")
        saver.save(df, meta)
    elapsed = time.perf_counter() - t0
    echo(f"Done in {format_seconds(elapsed)} (estimated {format_seconds(total_est)}); "
         f"{len(written)} files under {cfg.out}:")
    for path in written:
        echo(f"  {path}")
    saver.finish()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m profiler``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(USAGE)
        return 0
    try:
        cfg = parse_args(args)
        run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SaveFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _usage() -> str:
    top = [f.name for f in dataclasses.fields(ProfilerConfig) if f.name != "grid"]
    grid = [f.name for f in dataclasses.fields(GridConfig)]
    return ("usage: python -m profiler model=<catalogue name> [tp=1,2,4,8] [out=DIR] "
            "[key=value ...]\n  keys: " + ", ".join(top) + "\n  grid keys: " + ", ".join(grid)
            + "\n  see docs/profiler.md")


USAGE = _usage()
