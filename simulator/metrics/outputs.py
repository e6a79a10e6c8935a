"""Files one simulation writes: Parquet tables, summary.json and a Perfetto trace.

Every file is written to a temporary name in the target directory and then moved into
place with ``os.replace``, so a crash never leaves a truncated file under its real name.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.metrics.summary import (
    batch_frame,
    replica_frame,
    request_frame,
    summarize,
    token_frame,
)
from simulator.records import SimulationRecords

PARQUET_COMPRESSION = "zstd"


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success fsync it and move it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    with _atomic_path(path) as tmp:
        write(tmp)
    return path


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    return _write_atomic(
        path,
        lambda tmp: df.to_parquet(
            tmp, engine="pyarrow", index=False, compression=PARQUET_COMPRESSION
        ),
    )


def _jsonable(x: Any) -> Any:
    """Recursively convert numpy/Path values to JSON types; NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, np.ndarray)):
        return [_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def _write_json(obj: Any, path: Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, indent=2, allow_nan=False)
            f.write("\n")

    return _write_atomic(path, write)


def _meta(event: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    """A metadata event naming or ordering a process/thread track."""
    return {"ph": "M", "name": event, "pid": pid, "tid": tid, "args": args}


def chrome_trace_events(rec: SimulationRecords) -> list[dict[str, Any]]:
    """Trace events: one process per replica, one thread per pipeline stage, one complete
    ("X") event per batch per stage (microseconds), plus naming metadata."""
    num_replicas = len(rec.replica_kv_blocks)
    stages = max(int(rec.num_stages), 1)
    events: list[dict[str, Any]] = []
    for r in range(num_replicas):
        events += [
            _meta("process_name", r, 0, name=f"replica {r}"),
            _meta("process_sort_index", r, 0, sort_index=r),
        ]
        for s in range(stages):
            events += [
                _meta("thread_name", r, s, name=f"stage {s}"),
                _meta("thread_sort_index", r, s, sort_index=s),
            ]
    n = len(rec.batch_start)
    if not n:
        return events
    st = np.asarray(rec.batch_stage_start, dtype=np.float64).reshape(n, -1)
    en = np.asarray(rec.batch_stage_end, dtype=np.float64).reshape(n, -1)
    ts = (st * 1e6).ravel().tolist()
    dur = ((en - st) * 1e6).ravel().tolist()
    k = st.shape[1]
    batch = np.repeat(np.arange(n), k).tolist()
    stage = np.tile(np.arange(k), n).tolist()
    replica = np.repeat(np.asarray(rec.batch_replica, dtype=np.int64), k).tolist()
    pre = np.repeat(np.asarray(rec.batch_prefill_tokens, dtype=np.int64), k).tolist()
    npre = np.repeat(np.asarray(rec.batch_num_prefills, dtype=np.int64), k).tolist()
    dec = np.repeat(np.asarray(rec.batch_num_decodes, dtype=np.int64), k).tolist()
    events.extend(
        {
            "ph": "X",
            "name": f"batch {b}",
            "cat": "batch",
            "pid": r,
            "tid": s,
            "ts": t,
            "dur": d,
            "args": {"batch_id": b, "num_prefills": p, "prefill_tokens": pt, "decodes": q},
        }
        for b, s, r, t, d, p, pt, q in zip(
            batch, stage, replica, ts, dur, npre, pre, dec, strict=True
        )
    )
    return events


def write_chrome_trace(rec: SimulationRecords, path: str | Path) -> Path:
    """Write a Chrome/Perfetto trace-event JSON of every batch on every pipeline stage."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"traceEvents": chrome_trace_events(rec), "displayTimeUnit": "ms"}, f)

    return _write_atomic(path, write)


def write_outputs(
    rec: SimulationRecords,
    out_dir: str | Path,
    *,
    chrome_trace: bool = False,
    token_table: bool = False,
) -> dict[str, Path]:
    """Write requests/batches/replicas Parquet tables (zstd), summary.json (with the config
    under "config") and optionally tokens.parquet and trace.json; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "requests": _write_parquet(request_frame(rec), out / "requests.parquet"),
        "batches": _write_parquet(batch_frame(rec), out / "batches.parquet"),
        "replicas": _write_parquet(replica_frame(rec), out / "replicas.parquet"),
    }
    if token_table:
        paths["tokens"] = _write_parquet(token_frame(rec), out / "tokens.parquet")
    if chrome_trace:
        paths["trace"] = write_chrome_trace(rec, out / "trace.json")
    summary = {**summarize(rec), "config": rec.config}
    paths["summary"] = _write_json(summary, out / "summary.json")
    return paths
