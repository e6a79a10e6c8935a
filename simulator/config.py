"""Typed, validated configuration of one simulation.

Every dataclass validates itself at construction, so a bad value fails with a
``ConfigError`` naming the field, the value and what is allowed, before any simulation
starts. ``SimulationConfig.from_dict`` builds the whole tree from plain mappings (Hydra,
YAML, JSON) and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.catalogue import load_catalogue
from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError, ConfigWarning, boolean, in_range, one_of
from simulator.execution.predictors.params import ProfiledParams
from simulator.execution.roofline import RooflineParams
from simulator.memory import KvCapacity, kv_capacity
from simulator.precision import Precision
from simulator.workload import WorkloadConfig

SCHEDULERS = ("vllm_v0", "vllm_v1", "vllm_v1_async", "orca", "sarathi", "faster_transformer",
              "lightllm")
ROUTERS = ("round_robin", "random", "least_outstanding")
EXECUTION_KINDS = ("roofline", "calibrated", "profiled")
CHUNKED_PREFILL = ("auto", "on", "off")
# vLLM <= 0.6 switches chunked prefill on by default when max_model_len exceeds 32K.
VLLM_V0_LONG_CONTEXT = 32 * 1024
# Engine releases whose `vllm serve` defaults fill the knobs a config leaves at 0
# (SchedulerConfig.engine_defaults, vllm_serve_defaults); "" = none, every knob explicit.
ENGINE_DEFAULTS = ("", "vllm_0_6", "vllm_0_8", "vllm_0_19")
_ENGINE_DEFAULT_KNOBS = ("max_batch_size", "chunk_size", "max_tokens_per_batch")
_ENGINE_DEFAULTS_ALLOWED = ("allowed values are vllm_0_6, vllm_0_8, vllm_0_19, or '' (none: "
                            "max_batch_size, chunk_size and max_tokens_per_batch explicit)")
# vLLM v1's larger batch defaults need this much device memory (GiB; EngineArgs, 0.8.5 on).
VLLM_LARGE_GPU_GIB = 70
# SchedulerConfig.chunk_size's default: the value the non-chunking presets carry.
DEFAULT_CHUNK_SIZE = 512
_ROOFLINE_FIELDS = tuple(f.name for f in dataclasses.fields(RooflineParams))


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, value, "must be an integer >= 1")


def vllm_serve_defaults(release: str, sku: SkuSpec | None, max_context: int,
                        chunked_prefill: bool) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) that ``vllm serve`` of ``release`` picks when
    neither flag is given, on GPU ``sku`` for a model of ``max_context`` tokens.

    Read from each release's source (the OpenAI-server usage context):

    - ``vllm_0_6``: vLLM 0.6.0-0.6.4, ``SchedulerConfig.__init__`` (vllm/config.py): 512
      with chunked prefill, else max(max_model_len, 2048); max_num_seqs 256 (EngineArgs).
      (0.6.5 and 0.6.6 give 2048 with chunked prefill.)
    - ``vllm_0_8``: vLLM 0.8.0-0.8.3, ``EngineArgs._set_default_args_v1``
      (vllm/engine/arg_utils.py): 8192 when the device name contains "h100" or "h200", else
      2048; max_num_seqs 1024 on every GPU. (0.8.4, PR #16158: max_num_seqs 256 off
      H100/H200; 0.8.5: the >= 70 GiB rule below without its A100 exception.)
    - ``vllm_0_19``: vLLM 0.19.0, ``EngineArgs.get_batch_defaults`` (A100 exception since
      PR #17885): 8192 and 1024 when the device has >= 70 GiB and its name lacks "a100",
      else 2048 and 256.

    The SKU's catalogue name stands for the device name and its ``memory_gb`` for the GiB
    the device reports (an "80GB" H100 or A100 reports about 79 GiB).
    """
    if release == "vllm_0_6":
        return 256, 512 if chunked_prefill else max(max_context, 2048)
    if sku is None:
        raise ConfigError("scheduler.engine_defaults", release,
                          "its defaults depend on the GPU: resolve it with the SKU spec")
    name = sku.name.lower()
    if release == "vllm_0_8":
        return 1024, 8192 if ("h100" in name or "h200" in name) else 2048
    if release == "vllm_0_19":
        large = sku.memory_gb >= VLLM_LARGE_GPU_GIB and "a100" not in name
        return (1024, 8192) if large else (256, 2048)
    raise ConfigError("scheduler.engine_defaults", release, _ENGINE_DEFAULTS_ALLOWED)


@dataclass
class ParallelConfig:
    """How one replica is split (TP x PP GPUs) and how many replicas serve.

    ``expert_parallel`` (MoE models) follows vLLM's ``--enable-expert-parallel``: it is 1
    (experts split by TP inside each replica, replicas independent) or the number of GPUs
    of all replicas, ``replicas x tensor_parallel``: the replicas are then vLLM's data-
    parallel ranks of one EP group, each GPU holds ``num_experts / expert_parallel`` whole
    experts, every MoE layer dispatches the tokens of all ranks to the GPUs holding their
    experts and combines the results back, and the ranks step in lockstep (docs/engine.md).
    """

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    replicas: int = 1
    expert_parallel: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _positive_int(f"parallel.{f.name}", getattr(self, f.name))

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


@dataclass
class SchedulerConfig:
    """A replica scheduler and its knobs; each scheduler reads the knobs it has.

    - ``max_batch_size``: sequences per batch (vLLM max_num_seqs, Orca/FT slots).
    - ``chunk_size``: token budget per iteration of Sarathi-Serve and vLLM v1
      (max_num_batched_tokens with chunked prefill), and of vLLM v0 with chunked prefill
      on; the others ignore it (a value other than the default is a ConfigWarning).
    - ``max_tokens_per_batch``: prefill token cap of vLLM v0 and LightLLM batches.
    - ``block_size``: tokens per KV block (LightLLM is token-granular and ignores it).
    - ``watermark``: fraction of KV blocks vLLM v0 keeps free when admitting prompts.
    - ``max_waiting_iters``: LightLLM decodes at most this many iterations while requests
      wait before it runs a prefill batch.
    - ``gpu_memory_utilization``: fraction of GPU memory the engine may use.
    - ``num_blocks_override``: explicit KV block count (0 = derive from memory).
    - ``kv_tokens_override``: explicit KV capacity in tokens, as a real engine reports it
      (vLLM: "GPU KV cache size: N tokens"); blocks = N // block size. 0 = derive.
    - ``chunked_prefill``: vLLM v0's switch (``vllm_v0`` only; the others ignore ``off``,
      their fixed behaviour: sarathi, vllm_v1 and vllm_v1_async always chunk, the rest
      never). ``on``: vLLM v0's chunked-prefill scheduler (Sarathi-Serve's policy under the
      ``chunk_size`` budget); ``auto``: vLLM <= 0.6's default, ``on`` exactly when the
      model's context exceeds 32K tokens (``SimulationConfig`` resolves it to on/off).
    - ``execution_overrides``: ``RooflineParams`` fields this engine version fixes (e.g. its
      per-step CPU overhead); ``SimulationConfig`` applies them to ``execution.roofline``.
    - ``engine_defaults``: an engine release (``vllm_0_6``, ``vllm_0_8``, ``vllm_0_19``)
      whose ``vllm serve`` defaults fill ``max_batch_size`` (max_num_seqs) and
      ``chunk_size`` / ``max_tokens_per_batch`` (max_num_batched_tokens) where they are 0:
      vLLM picks them from the GPU and the model, so ``SimulationConfig`` resolves them
      (``resolved``, ``vllm_serve_defaults``). A value set explicitly always stands.
    """

    name: str = "sarathi"
    max_batch_size: int = 128
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_tokens_per_batch: int = 4096
    block_size: int = 16
    watermark: float = 0.01
    max_waiting_iters: int = 10
    gpu_memory_utilization: float = 0.9
    num_blocks_override: int = 0
    kv_tokens_override: int = 0
    chunked_prefill: str = "off"
    execution_overrides: dict[str, Any] = field(default_factory=dict)
    engine_defaults: str = ""

    def __post_init__(self) -> None:
        one_of("scheduler.name", self.name, SCHEDULERS)
        if self.engine_defaults not in ENGINE_DEFAULTS:
            raise ConfigError("scheduler.engine_defaults", self.engine_defaults,
                              _ENGINE_DEFAULTS_ALLOWED)
        for name in ("max_batch_size", "chunk_size", "max_tokens_per_batch", "block_size",
                     "max_waiting_iters"):
            value = getattr(self, name)
            if name in _ENGINE_DEFAULT_KNOBS and value == 0 and type(value) is int:
                if not self.engine_defaults:
                    raise ConfigError(f"scheduler.{name}", value,
                                      "must be an integer >= 1, or 0 (the engine's default) "
                                      "with scheduler.engine_defaults set (vllm_0_6, "
                                      "vllm_0_8, vllm_0_19)")
                continue
            _positive_int(f"scheduler.{name}", value)
        in_range("scheduler.watermark", self.watermark, 0, 1, hi_open=True)
        in_range("scheduler.gpu_memory_utilization", self.gpu_memory_utilization, 0, 1,
                 lo_open=True)
        for name in ("num_blocks_override", "kv_tokens_override"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"scheduler.{name}", v,
                                  "must be an integer >= 0 (0 = derive from GPU memory)")
        if self.num_blocks_override and self.kv_tokens_override:
            raise ConfigError("scheduler.kv_tokens_override", self.kv_tokens_override,
                              f"conflicts with num_blocks_override={self.num_blocks_override}; "
                              "set at most one of them")
        one_of("scheduler.chunked_prefill", self.chunked_prefill, CHUNKED_PREFILL)
        if self.name != "vllm_v0" and self.chunked_prefill != "off":
            raise ConfigError("scheduler.chunked_prefill", self.chunked_prefill,
                              f"only vllm_v0 has a chunked-prefill switch ({self.name} "
                              "chunks or not by design: sarathi, vllm_v1 and vllm_v1_async "
                              "always, orca, faster_transformer and lightllm never); leave "
                              "it off")
        self._check_overrides()

    def _check_overrides(self) -> None:
        ov = self.execution_overrides
        if not isinstance(ov, Mapping):
            raise ConfigError("scheduler.execution_overrides", ov,
                              "must be a mapping of execution.roofline fields")
        for key, value in ov.items():
            if key not in _ROOFLINE_FIELDS:
                raise ConfigError(f"scheduler.execution_overrides.{key}", value,
                                  "unknown key; allowed: " + ", ".join(_ROOFLINE_FIELDS))
            try:
                dataclasses.replace(RooflineParams(), **{key: value})
            except ConfigError as err:
                raise ConfigError(f"scheduler.execution_overrides.{key}", value,
                                  err.allowed) from err
        self.execution_overrides = dict(ov)

    def resolved(self, max_context: int, sku: SkuSpec | None = None) -> SchedulerConfig:
        """This config for a model of ``max_context`` tokens on GPU ``sku``, as the engine
        would run it: ``chunked_prefill: auto`` decided (``on`` when the context exceeds
        32K, vLLM <= 0.6's rule), then the knobs left at 0 set to ``engine_defaults``'
        choice (``vllm_serve_defaults``; max_num_batched_tokens goes to both ``chunk_size``
        and ``max_tokens_per_batch``). Explicit values stand; ``self`` when nothing changes.
        """
        out = self
        if out.chunked_prefill == "auto":
            on = max_context > VLLM_V0_LONG_CONTEXT
            out = dataclasses.replace(out, chunked_prefill="on" if on else "off")
        unset = [k for k in _ENGINE_DEFAULT_KNOBS if getattr(out, k) == 0]
        if not unset:
            return out
        seqs, tokens = vllm_serve_defaults(out.engine_defaults, sku, max_context,
                                           out.chunked_prefill == "on")
        values = {"max_batch_size": seqs, "chunk_size": tokens, "max_tokens_per_batch": tokens}
        return dataclasses.replace(out, **{k: values[k] for k in unset})


@dataclass
class ExecutionConfig:
    """Which batch-runtime model to use and its parameters. ``predictor`` is accepted as
    another name for ``profiled`` (measured profiles through fitted predictors)."""

    kind: str = "roofline"
    roofline: RooflineParams = field(default_factory=RooflineParams)
    profiled: ProfiledParams = field(default_factory=ProfiledParams)  # kind "profiled"

    def __post_init__(self) -> None:
        if self.kind == "predictor":
            self.kind = "profiled"
        one_of("execution.kind", self.kind, EXECUTION_KINDS)


@dataclass
class EngineConfig:
    """Event-loop options: ``fast_forward`` advances steady decode phases in one event
    (same results, bit for bit, as stepping one iteration at a time)."""

    fast_forward: bool = True
    max_fast_forward_steps: int = 1024

    def __post_init__(self) -> None:
        boolean("engine.fast_forward", self.fast_forward)
        _positive_int("engine.max_fast_forward_steps", self.max_fast_forward_steps)


@dataclass
class SimulationConfig:
    """One simulation: model on a GPU SKU and node type, parallelism, scheduler, router,
    workload, execution model and seed. Catalogue names are resolved and checked here."""

    model: str = "llama-3-8b"
    sku: str = "h100-sxm"
    catalogue: str = ""  # directory of user YAML merged over the built-in catalogue
    node: str = ""  # "" = the SKU's default node
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    router: str = "round_robin"
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    precision: Precision = field(default_factory=Precision)
    seed: int = 0

    model_spec: ModelSpec = field(init=False, repr=False)
    sku_spec: SkuSpec = field(init=False, repr=False)
    node_spec: NodeSpec = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.catalogue, Path):
            self.catalogue = str(self.catalogue)
        if not isinstance(self.catalogue, str):
            raise ConfigError("catalogue", self.catalogue,
                              "must be a directory path ('' = the built-in catalogue)")
        cat = load_catalogue(self.catalogue or None)
        self.model_spec = cat.model(self.model)
        self.sku_spec = cat.sku(self.sku)
        if not self.node:
            self.node = cat.default_node_for(self.sku)
        self.node_spec = cat.node(self.node)
        if self.node_spec.sku != self.sku:
            raise ConfigError("node", self.node,
                              f"holds {self.node_spec.sku} GPUs, not sku={self.sku}; nodes for "
                              f"{self.sku}: {', '.join(cat.nodes_for(self.sku))}")
        one_of("router", self.router, ROUTERS)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError("seed", self.seed, "must be an integer >= 0")
        if not isinstance(self.precision, Precision):
            raise ConfigError("precision", self.precision, "must be a Precision")
        self.precision.check_sku(self.sku_spec)
        given = self.scheduler
        self.scheduler = given.resolved(self.model_spec.max_context, self.sku_spec)
        self._warn_unused_chunk_size(given)
        self._apply_execution_overrides()
        self._check_parallelism()
        self.kv_capacity()  # raises when the model does not fit
        self._check_lengths_context()
        if self.execution.kind == "profiled":
            self.check_profile_stores()
        elif self.execution.profiled.store:
            warnings.warn(
                f"execution.profiled.store={list(self.execution.profiled.store)} is ignored: "
                f"execution.kind={self.execution.kind} prices every operator from its model; "
                "set execution.kind=profiled to use measured profiles", ConfigWarning,
                stacklevel=2)

    def check_profile_stores(self) -> None:
        """ConfigError naming ``execution.profiled.store`` unless every store it names is
        an existing directory (none named: the packaged profiles). Construction calls it
        for ``execution.kind=profiled``, so that a mistyped path is an error before any
        work rather than silently replaced by the fallback model.
        """
        for root in self.execution.profiled.store:
            path = Path(root).expanduser()
            if not path.is_dir():
                what = "is not a directory" if path.exists() else "no such directory"
                raise ConfigError(
                    "execution.profiled.store", root,
                    f"{what}; give existing profile-store directories (`python -m profiler "
                    "... out=DIR` writes one), or [] for the profiles shipped in the package")

    def _warn_unused_chunk_size(self, given: SchedulerConfig) -> None:
        """ConfigWarning naming ``scheduler.chunk_size`` when it is set (to anything but
        the default, 512, or the engine release's default) for a scheduler that does not
        chunk prompts and so ignores it. ``given``: the scheduler config as given, before
        ``resolved`` filled the engine defaults."""
        from simulator.scheduling import REGISTRY  # schedulers import this module

        s = self.scheduler
        if REGISTRY[s.name].uses_chunk_size(s):
            return
        defaults = {0, DEFAULT_CHUNK_SIZE}
        if given.engine_defaults:
            defaults.add(vllm_serve_defaults(given.engine_defaults, self.sku_spec,
                                             self.model_spec.max_context,
                                             s.chunked_prefill == "on")[1])
        if given.chunk_size in defaults:
            return
        why = " (scheduler.chunked_prefill is off)" if s.name == "vllm_v0" else ""
        warnings.warn(
            f"scheduler.chunk_size={given.chunk_size} is ignored: the {s.name} scheduler does "
            f"not chunk prompts{why}; chunk_size is the per-iteration token budget of sarathi, "
            "vllm_v1, vllm_v1_async, and vllm_v0 with scheduler.chunked_prefill=on "
            "(vllm_v0 and lightllm cap prefill tokens with scheduler.max_tokens_per_batch)",
            ConfigWarning, stacklevel=2)

    def shortest_lengths(self) -> tuple[int, int] | None:
        """(prompt, output) tokens of the workload's shortest request, after
        ``max_total_tokens``' cap: every request's for ``fixed`` lengths, (min_prefill,
        min_decode)'s for ``uniform`` and ``zipf``; None for ``trace`` lengths."""
        ln = self.workload.lengths
        if ln.kind == "trace":
            return None
        prefill_name, decode_name = self._length_fields()
        prefill, decode = getattr(ln, prefill_name), getattr(ln, decode_name)
        if ln.max_total_tokens > 0:
            prefill = min(prefill, ln.max_total_tokens - 1)
            decode = max(1, min(decode, ln.max_total_tokens - prefill))
        return prefill, decode

    def fixed_lengths(self) -> tuple[int, int] | None:
        """(prompt, output) tokens of every request of a ``fixed``-length workload, after
        ``max_total_tokens``' cap; None for the other length kinds."""
        return self.shortest_lengths() if self.workload.lengths.kind == "fixed" else None

    def _length_fields(self) -> tuple[str, str]:
        """Names of the ``workload.lengths`` fields that set the shortest request."""
        if self.workload.lengths.kind == "fixed":
            return "prefill_tokens", "decode_tokens"
        return "min_prefill", "min_decode"

    def _shortest_what(self, prefill: int, decode: int) -> str:
        if self.workload.lengths.kind == "fixed":
            return f"prompt + output = {prefill} + {decode} = {prefill + decode} tokens"
        return (f"the shortest request, prompt + output = {prefill} + {decode} = "
                f"{prefill + decode} tokens,")

    def _check_lengths_context(self) -> None:
        """A workload whose shortest request is longer than the model's context (fixed
        lengths, or the minimum of uniform and zipf ones): every request would be
        rejected, so it is a ConfigError naming the length that is too long. Workloads of
        which only some requests are too long are left to the summary's rejection count."""
        lengths = self.shortest_lengths()
        ctx = self.model_spec.max_context
        if lengths is None or sum(lengths) <= ctx:
            return
        prefill, decode = lengths
        prefill_name, decode_name = self._length_fields()
        name = prefill_name if prefill >= ctx else decode_name
        raise ConfigError(
            f"workload.lengths.{name}", getattr(self.workload.lengths, name),
            f"{self._shortest_what(prefill, decode)} exceeds {self.model}'s max context of "
            f"{ctx} tokens, so every request would be rejected; keep "
            f"workload.lengths.{prefill_name} + {decode_name} <= {ctx}, or cap each request "
            f"with workload.lengths.max_total_tokens (e.g. {ctx})")

    def check_workload_fits(self) -> None:
        """ConfigError when every request would be rejected by the replica scheduler (too
        long for the model's context, the KV cache or the scheduler's token budget): when
        the shortest request of a ``fixed``, ``uniform`` or ``zipf`` workload is (rejection
        grows with length), naming ``workload.lengths.prefill_tokens`` / ``decode_tokens``
        (fixed) or ``min_prefill`` / ``min_decode``. Trace lengths are not checked, nor
        workloads of which only some requests are rejected (those are counted, with
        reasons, in the summary)."""
        import numpy as np

        from simulator.scheduling import REGISTRY, RequestState  # imports this module
        from simulator.workload import RequestTable

        lengths = self.shortest_lengths()
        if lengths is None:
            return
        prefill, decode = lengths
        cap = self.kv_capacity()
        # request 0: the workload's; request 1: its prompt with one output token
        state = RequestState(RequestTable(arrival=np.zeros(2), num_prefill=[prefill, prefill],
                                          num_decode=[decode, 1]))
        sched = REGISTRY[self.scheduler.name](0, self.scheduler, state, cap.num_blocks,
                                              self.model_spec.max_context)
        reason = sched.reject_reason(0)
        if not reason:
            return
        prefill_name, decode_name = self._length_fields()
        name = prefill_name if sched.reject_reason(1) else decode_name
        kv = (f" (KV capacity per replica: {cap.num_tokens} tokens, {cap.num_blocks} blocks "
              f"of {cap.block_size})" if "KV" in reason else "")
        even = ("" if self.workload.lengths.kind == "fixed" else
                f", even the shortest ({prefill} prompt + {decode} output tokens)")
        raise ConfigError(f"workload.lengths.{name}", getattr(self.workload.lengths, name),
                          f"every request would be rejected{even}: {reason}{kv}")

    def _apply_execution_overrides(self) -> None:
        """Set the scheduler preset's ``execution_overrides`` in ``execution.roofline``.

        A value the user set in ``execution.roofline`` (anything but the default) that
        differs from the preset's is a conflict: ConfigError naming both."""
        ov = self.scheduler.execution_overrides
        if not ov:
            return
        roof, default = self.execution.roofline, RooflineParams()
        for key, value in ov.items():
            mine = getattr(roof, key)
            if mine != getattr(default, key) and mine != value:
                raise ConfigError(
                    f"execution.roofline.{key}", mine,
                    f"conflicts with scheduler.execution_overrides.{key}={value!r} of the "
                    f"{self.scheduler.name} preset; set only one of them")
        self.execution = dataclasses.replace(
            self.execution, roofline=dataclasses.replace(roof, **ov))

    def kv_capacity(self) -> KvCapacity:
        """Paged-KV capacity of one replica under this scheduler's block size and batch."""
        from simulator.scheduling import REGISTRY  # schedulers import this module

        sched = REGISTRY[self.scheduler.name]
        return kv_capacity(
            self.model_spec, self.sku_spec,
            tp=self.parallel.tensor_parallel, pp=self.parallel.pipeline_parallel,
            block_size=sched.effective_block_size(self.scheduler),
            gpu_memory_utilization=self.scheduler.gpu_memory_utilization,
            max_tokens=sched.max_batch_tokens(self.scheduler),
            max_seqs=self.scheduler.max_batch_size,
            num_blocks_override=self.scheduler.num_blocks_override,
            kv_tokens_override=self.scheduler.kv_tokens_override,
            precision=self.precision,
            ep=self.parallel.expert_parallel,
        )

    def _check_parallelism(self) -> None:
        m, tp, pp = self.model_spec, self.parallel.tensor_parallel, self.parallel.pipeline_parallel
        if m.num_heads % tp:
            raise ConfigError("parallel.tensor_parallel", tp,
                              f"must divide {m.name}'s {m.num_heads} attention heads; allowed: "
                              + ", ".join(str(d) for d in _divisors(m.num_heads)))
        if tp > m.num_kv_heads and tp % m.num_kv_heads:
            raise ConfigError("parallel.tensor_parallel", tp,
                              f"must divide or be a multiple of {m.name}'s "
                              f"{m.num_kv_heads} KV heads")
        if m.num_layers % pp:
            raise ConfigError("parallel.pipeline_parallel", pp,
                              f"must divide {m.name}'s {m.num_layers} layers; allowed: "
                              + ", ".join(str(d) for d in _divisors(m.num_layers)))
        if tp > self.node_spec.gpus_per_node:
            raise ConfigError("parallel.tensor_parallel", tp,
                              f"must be <= {self.node_spec.gpus_per_node} GPUs per node of "
                              f"{self.node}: tensor parallelism stays inside one node")
        self._check_expert_parallel()

    def _check_expert_parallel(self) -> None:
        """vLLM's semantics: EP is off (1) or spans every GPU of every replica."""
        m, par = self.model_spec, self.parallel
        ep, group = par.expert_parallel, par.replicas * par.tensor_parallel
        if ep == 1:
            return
        if not m.is_moe:
            raise ConfigError("parallel.expert_parallel", ep,
                              f"must be 1: {m.name} is a dense model (expert parallelism "
                              "splits a mixture-of-experts model's experts)")
        if ep != group:
            raise ConfigError("parallel.expert_parallel", ep,
                              f"must be 1 or replicas x tensor_parallel = {par.replicas} x "
                              f"{par.tensor_parallel} = {group} (as vLLM's "
                              "--enable-expert-parallel: the EP group spans every GPU of the "
                              "data-parallel replicas)")
        if m.num_experts % ep:
            raise ConfigError("parallel.expert_parallel", ep,
                              f"must divide {m.name}'s {m.num_experts} experts; allowed: 1, "
                              + ", ".join(str(d) for d in _divisors(m.num_experts) if d > 1))
        if par.pipeline_parallel != 1:
            raise ConfigError("parallel.pipeline_parallel", par.pipeline_parallel,
                              f"must be 1 with expert_parallel={ep} (the lockstep engine of "
                              "an EP group runs one pipeline stage)")

    @property
    def num_gpus(self) -> int:
        return self.parallel.gpus_per_replica * self.parallel.replicas

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (resolved catalogue names, no specs)."""
        d = dataclasses.asdict(self)
        for k in ("model_spec", "sku_spec", "node_spec"):
            d.pop(k, None)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimulationConfig:
        """Build from nested plain mappings; unknown keys raise ConfigError naming them."""
        d = dict(d)
        kwargs: dict[str, Any] = {}
        nested = {
            "parallel": ParallelConfig,
            "scheduler": SchedulerConfig,
            "engine": EngineConfig,
            "precision": Precision,
        }
        allowed = [f.name for f in dataclasses.fields(cls) if f.init]
        for key, value in d.items():
            if key not in allowed:
                raise ConfigError(key, value, "unknown key; allowed keys: " + ", ".join(allowed))
            if key in nested:
                kwargs[key] = build(nested[key], value, key)
            elif key == "workload":
                kwargs[key] = (value if isinstance(value, WorkloadConfig)
                               else WorkloadConfig.from_dict(value))
            elif key == "execution":
                kwargs[key] = _execution_from_dict(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _execution_from_dict(value: Any) -> ExecutionConfig:
    if isinstance(value, ExecutionConfig):
        return value
    value = dict(value)
    roof = value.pop("roofline", {})
    prof = value.pop("profiled", {})
    cfg = build(ExecutionConfig, value, "execution")
    cfg.roofline = build(RooflineParams, roof, "execution.roofline")
    cfg.profiled = build(ProfiledParams, prof, "execution.profiled")
    return cfg


def build(cls: type, value: Any, path: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting keys it does not have."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(path, value, f"must be a mapping of {cls.__name__} fields")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in value:
        if key not in names:
            raise ConfigError(f"{path}.{key}", value[key],
                              "unknown key; allowed keys: " + ", ".join(names))
    return cls(**dict(value))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0 and d <= 64]


