"""Execute engine-produced batches through a full layer stack and compare with predictions.

The simulator (``simulator.Simulation``) serves a short workload with each scheduler
(default: Sarathi-Serve and vLLM v0) with fast-forward off, so that every batch passes
through the execution model; a recording wrapper keeps each batch's composition (prefill
chunks, the tokens cached before each chunk, decode context lengths) and its predicted
time. A sample of those batches is then run for real: embedding, every decoder layer of
the model (random bf16 weights, one GPU, TP 1; per-layer KV caches of the batch's
lengths), final norm, LM head and greedy sampling, timed with CUDA events
(``profiler.timing``). Output: ``validate_batches.parquet`` (one row per measured batch)
and ``validate_batches.md`` (errors per scheduler).

On a GPU (Llama-3-8B, 32 layers, about 16 GB of weights)::

    PYTHONPATH=. python3 experiments/validate_batches.py --device cuda --sku h100-sxm

On the CPU, ``--tiny`` runs the same path on a scaled-down model (``profiler.layer.
tiny_spec``, 2 layers) with a short workload; its times are not comparable with the GPU
predictions, the run only checks that the path works::

    python experiments/validate_batches.py --device cpu --tiny

``--override KEY=VALUE`` (repeatable, dotted keys, YAML values) changes the simulation
config, e.g. ``--override execution.kind=roofline`` or
``--override scheduler.chunk_size=256``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from profiler.layer import DecoderLayer, LayerShape, tiny_spec  # noqa: E402
from profiler.timing import Timer  # noqa: E402
from simulator import SimulationConfig  # noqa: E402
from simulator.engine import Simulation, build_execution_model  # noqa: E402
from simulator.execution.base import ExecutionModel  # noqa: E402

# Parts of the prediction that the measured forward pass does not contain.
HOST_PARTS = ("cpu_overhead", "sampling")


class RecordingExecution(ExecutionModel):
    """Delegates to ``inner`` and keeps every batch it prices (launch order)."""

    def __init__(self, inner: ExecutionModel) -> None:
        self.inner = inner
        self.num_stages = inner.num_stages
        self.batches: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                 tuple[float, ...]]] = []

    def stage_times(self, prefill_chunks, prefill_prior, decode_kv):  # type: ignore[override]
        times = self.inner.stage_times(prefill_chunks, prefill_prior, decode_kv)
        self.batches.append((tuple(int(c) for c in prefill_chunks),
                             tuple(int(p) for p in prefill_prior),
                             tuple(int(k) for k in decode_kv), tuple(times)))
        return times

    def decode_steps(self, decode_kv, steps):  # type: ignore[override]
        raise RuntimeError("fast-forward must be off to record every batch")

    def breakdown(self, prefill_chunks, prefill_prior, decode_kv):  # type: ignore[override]
        return self.inner.breakdown(prefill_chunks, prefill_prior, decode_kv)


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def sim_config(args: argparse.Namespace, scheduler: str) -> SimulationConfig:
    """The simulation of one scheduler: TP 1, one replica, fast-forward off."""
    d: dict[str, Any] = {
        "model": args.model, "sku": args.sku,
        "scheduler": {"name": scheduler},
        "workload": {"num_requests": args.requests,
                     "arrival": {"kind": "poisson", "rate": args.rate},
                     "lengths": {"kind": "zipf", "min_prefill": args.min_prefill,
                                 "max_prefill": args.max_prefill, "min_decode": args.min_decode,
                                 "max_decode": args.max_decode, "zipf_theta": 0.6}},
        "engine": {"fast_forward": False},
        "seed": args.seed,
    }
    for item in args.override:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--override needs KEY=VALUE, got {item!r}")
        _set(d, key.strip(), yaml.safe_load(text))
    d.setdefault("parallel", {}).update(tensor_parallel=1, pipeline_parallel=1, replicas=1)
    d["engine"]["fast_forward"] = False
    return SimulationConfig.from_dict(d)


def record_batches(cfg: SimulationConfig) -> tuple[pd.DataFrame, ExecutionModel]:
    """Run the simulation; one row per batch with its composition and prediction."""
    rec = RecordingExecution(build_execution_model(cfg))
    sim = Simulation(cfg, execution=rec)
    records = sim.run()
    decodes, prefill_tokens = records.batch_num_decodes, records.batch_prefill_tokens
    if len(decodes) != len(rec.batches):
        raise RuntimeError(f"engine logged {len(decodes)} batches, recorder saw "
                           f"{len(rec.batches)}")
    rows = []
    for i, (chunks, prior, kv, times) in enumerate(rec.batches):
        if len(kv) != decodes[i] or sum(chunks) != prefill_tokens[i]:
            raise RuntimeError(f"batch {i}: the recorder and the engine's batch table disagree")
        parts = rec.breakdown(chunks, prior, kv)
        host = sum(p[k] for p in parts for k in HOST_PARTS)
        rows.append({"batch_id": i, "prefill_chunks": list(chunks), "prefill_prior": list(prior),
                     "decode_kv": list(kv), "num_prefills": len(chunks),
                     "prefill_tokens": sum(chunks), "num_decodes": len(kv),
                     "decode_kv_sum": sum(kv), "num_tokens": sum(chunks) + len(kv),
                     "predicted_s": float(sum(times)),
                     "predicted_gpu_s": float(sum(times) - host)})
    return pd.DataFrame(rows), rec.inner


def sample_batches(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """Up to ``n`` distinct compositions, evenly spread over the run."""
    key = df["prefill_chunks"].map(tuple).astype(str) + df["prefill_prior"].map(tuple).astype(
        str) + df["decode_kv"].map(tuple).astype(str)
    distinct = df[~key.duplicated()].reset_index(drop=True)
    if len(distinct) <= n:
        return distinct
    idx = np.unique(np.linspace(0, len(distinct) - 1, n).round().astype(int))
    return distinct.iloc[idx].reset_index(drop=True)


class Stack:
    """Embedding, ``layers`` decoder layers and the LM head of one model on one device."""

    def __init__(self, shape: LayerShape, layers: int, device: torch.device, seed: int,
                 attention: str) -> None:
        self.layers = [DecoderLayer(shape, device, seed=seed + i, attention=attention,
                                    with_edges=i == 0) for i in range(layers)]
        self.first = self.layers[0]
        self.shape, self.device = shape, device

    def kv_bytes(self, row: Any) -> int:
        """Bytes of the per-layer KV caches ``forward`` needs for batch ``row``."""
        dk = row.decode_kv
        tokens = sum(c + p for c, p in zip(row.prefill_chunks, row.prefill_prior, strict=True))
        tokens += len(dk) * (max(dk) if len(dk) else 0)
        return len(self.layers) * tokens * self.shape.kv_bytes_per_token()

    def step_fn(self, row: Any) -> Any:
        """A callable running the whole forward pass of batch ``row`` once."""
        chunks = [int(c) for c in row.prefill_chunks]
        prior = [int(p) for p in row.prefill_prior]
        dk = [int(k) for k in row.decode_kv]
        pos = [p + j for c, p in zip(chunks, prior, strict=True) for j in range(c)]
        pos += [k - 1 for k in dk]
        positions = torch.tensor(pos, device=self.device)
        ids = torch.randint(0, self.shape.vocab, (len(pos),), device=self.device)
        last = list(np.cumsum(chunks) - 1) + [sum(chunks) + j for j in range(len(dk))]
        last_idx = torch.tensor(last, device=self.device)
        kvs = [layer.batch_kv(chunks, prior, dk) for layer in self.layers]
        first = self.first

        def step() -> torch.Tensor:
            x = F.embedding(ids, first.w_embed)
            for layer, kv in zip(self.layers, kvs, strict=True):
                x = layer.forward_batch(x, positions, kv)
            h = first.norm(x.index_select(0, last_idx), first.norm1)
            return F.linear(h, first.w_lm).argmax(dim=-1)

        return step


def summary_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for sched, g in df.groupby("scheduler", sort=False):
        err = g["error_pct"].to_numpy()
        out.append({"scheduler": sched, "batches": len(g),
                    "mape_pct": float(np.mean(np.abs(err))),
                    "median_abs_pct": float(np.median(np.abs(err))),
                    "p90_abs_pct": float(np.percentile(np.abs(err), 90)),
                    "mean_signed_pct": float(np.mean(err)),
                    "measured_ms_median": float(g["measured_s"].median() * 1e3),
                    "eager_ms_median": float(g["measured_eager_s"].median() * 1e3),
                    "predicted_gpu_ms_median": float(g["predicted_gpu_s"].median() * 1e3)})
    return out


def _md_table(rows: list[dict[str, Any]], cols: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_report(df: pd.DataFrame, out: Path, header: dict[str, Any], skipped: int) -> Path:
    """The markdown report: setup, error summary per scheduler, a few batches each."""
    lines = ["# Batch validation: measured vs predicted batch time", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [f"- batches skipped (KV over the memory budget): {skipped}", "",
              "Measured = GPU time of the whole forward pass (embedding, layers, final norm, "
              "LM head, argmax) replayed as one CUDA graph (on the CPU: wall time); eager = "
              "the same pass launched op by op from Python. Error = predicted GPU time "
              "(prediction minus CPU overhead and sampling) / measured - 1, in percent.", ""]
    if header.get("tiny"):
        lines += ["**Tiny CPU run: the measured model is a scaled-down stand-in, so the "
                  "errors below say nothing about the predictor; this run only checks the "
                  "path.**", ""]
    lines += ["## Summary", "", _md_table(summary_rows(df), [
        "scheduler", "batches", "mape_pct", "median_abs_pct", "p90_abs_pct", "mean_signed_pct",
        "measured_ms_median", "eager_ms_median", "predicted_gpu_ms_median"]), ""]
    cols = ["batch_id", "num_prefills", "prefill_tokens", "num_decodes", "decode_kv_sum",
            "measured_ms", "predicted_gpu_ms", "error_pct"]
    for sched, g in df.groupby("scheduler", sort=False):
        pick = g.iloc[np.unique(np.linspace(0, len(g) - 1, min(len(g), 10)).round().astype(int))]
        rows = [{**r, "measured_ms": r["measured_s"] * 1e3,
                 "predicted_gpu_ms": r["predicted_gpu_s"] * 1e3}
                for r in pick.to_dict("records")]
        lines += [f"## {sched}: sample of batches", "", _md_table(rows, cols), ""]
    path = out / "validate_batches.md"
    path.write_text("\n".join(lines))
    return path


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--tiny", action="store_true", help="scaled-down model and short workload")
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--sku", default="h100-sxm", help="catalogue SKU the predictions are for")
    ap.add_argument("--schedulers", default="sarathi,vllm_v0")
    ap.add_argument("--layers", type=int, default=0, help="0 = the model's (tiny: 2)")
    ap.add_argument("--requests", type=int, default=0, help="0 = 64 (tiny: 12)")
    ap.add_argument("--rate", type=float, default=0.0, help="QPS; 0 = 16 (tiny: 50)")
    ap.add_argument("--min-prefill", type=int, default=0, help="0 = 32 (tiny: 8)")
    ap.add_argument("--max-prefill", type=int, default=0, help="0 = 2048 (tiny: 96)")
    ap.add_argument("--min-decode", type=int, default=0, help="0 = 16 (tiny: 4)")
    ap.add_argument("--max-decode", type=int, default=0, help="0 = 256 (tiny: 24)")
    ap.add_argument("--max-batches", type=int, default=0, help="0 = 60 (tiny: 6) per scheduler")
    ap.add_argument("--warmup", type=int, default=-1, help="-1 = 3 (tiny: 1)")
    ap.add_argument("--repeats", type=int, default=0, help="0 = 10 (tiny: 2)")
    ap.add_argument("--kv-budget-gb", type=float, default=0.0,
                    help="KV bytes per batch; 0 = half the free device memory (CPU: 2)")
    ap.add_argument("--attention", default="auto", help="auto | sdpa | flash_attn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="experiments/results/validate_batches")
    args = ap.parse_args(argv)
    defaults = {  # name: (full, tiny)
        "layers": (0, 2), "requests": (64, 12), "rate": (16.0, 50.0), "min_prefill": (32, 8),
        "max_prefill": (2048, 96), "min_decode": (16, 4), "max_decode": (256, 24),
        "max_batches": (60, 6), "repeats": (10, 2),
    }
    for name, (full, tiny) in defaults.items():
        if not getattr(args, name):
            setattr(args, name, tiny if args.tiny else full)
    if args.warmup < 0:
        args.warmup = 1 if args.tiny else 3
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the validation; returns the Parquet file written."""
    args = parse(argv)
    want = args.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(want)
    if device.type == "cpu" and not args.tiny:
        print("warning: full-size model on the CPU; this is very slow (use --tiny)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    recorded = []
    spec = None
    for sched in [s for s in args.schedulers.split(",") if s]:
        cfg = sim_config(args, sched)
        spec = cfg.model_spec
        table, _ = record_batches(cfg)
        picked = sample_batches(table, args.max_batches)
        picked.insert(0, "scheduler", sched)
        recorded.append(picked)
        print(f"{sched}: {len(table)} batches simulated, {len(picked)} sampled")
    batches = pd.concat(recorded, ignore_index=True)

    run_spec = tiny_spec(spec) if args.tiny else spec
    shape = LayerShape.from_spec(run_spec, 1)
    longest = int(max(max([p + c for c, p in zip(r.prefill_chunks, r.prefill_prior,
                                                 strict=True)] + list(r.decode_kv) + [1])
                      for r in batches.itertuples()))
    shape = dataclasses.replace(shape, context=max(shape.context, longest))
    layers = args.layers or spec.num_layers
    stack = Stack(shape, layers, device, args.seed, args.attention)
    # GPU time of the forward pass (one CUDA graph per batch: no Python launch gaps, as an
    # engine with CUDA graphs or a busy GPU sees it) and the eager PyTorch time with them.
    timer = Timer(device, args.warmup, args.repeats, cuda_mode="graph")
    eager = Timer(device, args.warmup, args.repeats, cuda_mode="eager")
    if args.kv_budget_gb > 0:
        budget = args.kv_budget_gb * 1e9
    elif device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] * 0.5
    else:
        budget = 2e9
    print(f"measuring {len(batches)} batches through {layers} layers of "
          f"{'tiny ' if args.tiny else ''}{spec.name} on {device} "
          f"({stack.first.attn.description}); KV budget {budget / 1e9:.1f} GB")

    measured: list[dict[str, Any]] = []
    skipped = 0
    with torch.inference_mode():
        for row in batches.itertuples():
            if stack.kv_bytes(row) > budget:
                skipped += 1
                continue
            step = stack.step_fn(row)
            st = timer.measure(step)
            et = eager.measure(step)
            measured.append({**row._asdict(), "measured_s": st["median_us"] * 1e-6,
                             "measured_min_s": st["min_us"] * 1e-6,
                             "measured_max_s": st["max_us"] * 1e-6, "timing": timer.mode,
                             "measured_eager_s": et["median_us"] * 1e-6})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    df = pd.DataFrame(measured).drop(columns=["Index"])
    df["error_pct"] = (df["predicted_gpu_s"] / df["measured_s"] - 1.0) * 100.0
    path = out / "validate_batches.parquet"
    df.to_parquet(path, compression="zstd", index=False)
    header = {
        "model": f"{spec.name}" + (f" (tiny stand-in: hidden {run_spec.hidden_size}, "
                                   f"head_dim {run_spec.head_size})" if args.tiny else ""),
        "layers measured": layers, "device": f"{device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})",
        "predictions for": f"{args.sku}, execution.kind={cfg.execution.kind}",
        "attention": stack.first.attn.description, "torch": torch.__version__,
        "workload": f"{args.requests} requests, Poisson {args.rate} QPS, Zipf prompts "
                    f"{args.min_prefill}..{args.max_prefill}, outputs "
                    f"{args.min_decode}..{args.max_decode}",
        "timing": f"{args.warmup} warm-up + {args.repeats} repeats, median "
                  f"({', '.join(sorted(set(df['timing'])))})",
        "tiny": args.tiny,
    }
    md = write_report(df, out, header, skipped)
    for s in summary_rows(df):
        print(f"{s['scheduler']}: {s['batches']} batches, MAPE {s['mape_pct']:.1f}%, "
              f"median |err| {s['median_abs_pct']:.1f}%")
    print(f"wrote {path} and {md} in {time.perf_counter() - t0:.1f}s")
    return path


if __name__ == "__main__":
    main()
