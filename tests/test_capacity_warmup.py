"""The capacity search judges SLOs on the same requests the summary reports."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import SimulationConfig, simulate
from vidur_search.capacity import rate_metrics


def test_rate_metrics_leave_out_warmup_requests_like_the_summary() -> None:
    cfg = SimulationConfig.from_dict({
        "model": "llama-3-8b", "sku": "h100-sxm",
        "workload": {"num_requests": 120, "warmup_requests": 40,
                     "arrival": {"kind": "poisson", "rate": 30.0}},
    })
    res = simulate(cfg)
    m = rate_metrics(res.records)
    assert m["completed"] == 120 and m["rejected"] == 0  # warm-up requests are not rejects
    for key in ("ttft", "tbt", "e2e"):
        assert m[f"{key}_p50"] == pytest.approx(res.summary[key]["p50"], rel=1e-9)
    assert m["tokens_per_s"] == pytest.approx(res.summary["throughput"]["total_tokens_per_s"],
                                              rel=1e-9)
    rec = res.records
    all_ttft = np.percentile((rec.first_token_at - rec.arrival), 50)
    assert all_ttft != pytest.approx(m["ttft_p50"], rel=1e-9)  # the warm-up ones differ
