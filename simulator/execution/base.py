"""The one interface between the engine and whatever predicts batch runtimes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np


class ExecutionModel(ABC):
    """Turns a batch into a runtime (seconds) for each pipeline stage of one replica.

    A batch is described by its prefill chunks (tokens in each chunk and the tokens of the
    same request already in the KV cache before it) and the context length of every decode
    (tokens attended, including the token being decoded). Decodes are costed from their
    actual lengths. Stage 0 carries the embedding and the per-iteration CPU overhead, the
    last stage the LM head and sampling, every stage but the last the PP send, and every
    layer its TP all-reduces.

    Contract used by the engine's fast path: ``decode_steps(kv, k)[j]`` equals, bit for bit,
    ``stage_times([], [], kv + j)`` for every ``j < k``.
    """

    num_stages: int

    @abstractmethod
    def stage_times(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
    ) -> tuple[float, ...]:
        """Seconds each pipeline stage spends on the batch, stage 0 first."""

    @abstractmethod
    def decode_steps(self, decode_kv: np.ndarray, steps: int) -> np.ndarray:
        """Stage times of ``steps`` consecutive decode-only iterations, shape (steps, stages).

        Iteration ``j`` decodes every sequence with context ``decode_kv + j``.
        """

    @abstractmethod
    def breakdown(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
    ) -> list[dict[str, float]]:
        """Per stage, the seconds spent in each part (embedding, attention_prefill,
        attention_decode, gemm, norm, allreduce, send_recv, lm_head, sampling,
        cpu_overhead, ...); each stage's parts sum to its ``stage_times`` entry."""

    def provenance(self) -> dict[str, Any]:
        """Where this model's times come from, for the run's summary: ``kind`` (the model
        that ran), ``measured`` (operator -> the profile it came from), ``model`` (the
        analytical model of everything else) and ``modelled`` (the parts it prices),
        ``out_of_range`` (lookups outside the measured shapes) and ``note``."""
        return {"kind": type(self).__name__, "measured": {}, "model": type(self).__name__,
                "modelled": [], "out_of_range": {}, "note": ""}
