"""Each scheduler's defining behaviour, as its paper and Vidur describe it."""

from __future__ import annotations

import numpy as np

from tests.helpers import run, table


def _burst(n: int, prompt: int, out: int, gap: float = 0.0):
    return table(np.arange(n) * gap, [prompt] * n, [out] * n)


def test_sarathi_respects_token_budget_and_mixes_decodes_with_a_chunk() -> None:
    reqs = table(np.arange(40) * 0.05, np.random.default_rng(0).integers(50, 2000, 40),
                 [64] * 40)
    b = run("sarathi", reqs, chunk_size=256).batches
    assert (b.num_tokens <= 256).all()
    hybrid = (b.num_decodes > 0) & (b.prefill_tokens > 0)
    assert hybrid.any()
    # a 2000-token prompt is split into chunks across iterations
    assert (b.prefill_tokens < 2000).all()


def test_vllm_v1_serves_running_decodes_before_chunked_prefills() -> None:
    reqs = table([0.0, 0.001], [100, 3000], [50, 5])
    res = run("vllm_v1", reqs, chunk_size=512)
    b = res.batches
    assert (b.num_tokens <= 512).all()
    # the long prompt is chunked while request 0 keeps decoding in the same batches
    mixed = b[(b.num_decodes == 1) & (b.prefill_tokens == 511)]
    assert len(mixed) >= 5
    assert res.records.preemptions.sum() == 0


def test_faster_transformer_admits_nobody_into_a_running_batch() -> None:
    reqs = table(np.arange(12) * 0.02, [200] * 12, np.arange(12) * 7 + 5)
    r = run("faster_transformer", reqs, max_batch_size=4).requests
    cohorts = r.groupby("scheduled_at")["completed_at"].max().sort_index()
    starts = cohorts.index.to_numpy()
    # each static batch finishes before the next one starts
    assert len(starts) >= 3
    assert np.all(cohorts.to_numpy()[:-1] <= starts[1:])


def test_vllm_v0_preempts_the_newest_request_and_finishes_it_later() -> None:
    # 3 prompts of 32 tokens (2 blocks each) fit in 8 blocks; their growth does not
    reqs = _burst(3, 32, 40)
    res = run("vllm_v0", reqs, block_size=16, num_blocks_override=8, watermark=0.0)
    rec = res.records
    assert rec.preemptions[2] >= 1  # the newest
    assert rec.preemptions[0] == 0
    assert np.all(np.isfinite(rec.completed_at))
    assert rec.completed_at[2] == rec.completed_at.max()
    # prefill-first: a batch with prefills has no decodes
    b = res.batches
    assert not ((b.prefill_tokens > 0) & (b.num_decodes > 0)).any()


def test_orca_reserves_memory_for_the_full_sequence() -> None:
    prompt, out, bs = 64, 100, 16
    per_request = -(-(prompt + out - 1) // bs)
    reqs = _burst(3, prompt, out)
    res = run("orca", reqs, block_size=bs, num_blocks_override=2 * per_request)
    rec = res.records
    assert rec.batch_kv_blocks_used[0] == 2 * per_request  # full length, at admission
    assert rec.scheduled_at[2] >= min(rec.completed_at[0], rec.completed_at[1])
    assert rec.preemptions.sum() == 0
    # a paged scheduler would have admitted all three at once
    paged = run("vllm_v0", reqs, block_size=bs, num_blocks_override=2 * per_request,
                watermark=0.0).records
    assert paged.scheduled_at[2] == 0.0


def test_lightllm_alternates_prefill_and_decode_batches() -> None:
    waits = 4
    reqs = table([0.0, 0.0005], [100, 100], [60, 10])
    res = run("lightllm", reqs, max_waiting_iters=waits)
    b = res.batches
    assert not ((b.prefill_tokens > 0) & (b.num_decodes > 0)).any()
    prefills = np.flatnonzero(b.prefill_tokens.to_numpy() > 0)
    assert len(prefills) == 2
    # request 1 waited exactly max_waiting_iters decode iterations of request 0
    assert prefills[1] - prefills[0] - 1 == waits
    assert res.records.preemptions.sum() == 0
