"""One iteration's work on a replica."""

from __future__ import annotations


class Batch:
    """Prefill chunks (request, tokens, tokens already cached) and decodes (request, context).

    ``decode_kv`` is each decode's context length including the token being decoded.
    A scheduler that tracks its steady decodes as a cohort (``SarathiScheduler`` on the
    fast path) does not list them: ``cohort_decodes`` counts them and ``cohort_kv_sum`` is
    the sum of their contexts, which is all an execution model with ``stage_times_sum``
    needs. Timing fields are filled by the engine when the batch is launched.
    """

    __slots__ = (
        "cohort",
        "cohort_decodes",
        "cohort_kv_sum",
        "decode_ids",
        "decode_kv",
        "end",
        "flagged",
        "prefill_chunks",
        "prefill_ids",
        "prefill_prior",
        "replica",
        "stage_end",
        "stage_start",
        "start",
    )

    def __init__(self, replica: int) -> None:
        self.replica = replica
        self.prefill_ids: list[int] = []
        self.prefill_chunks: list[int] = []
        self.prefill_prior: list[int] = []
        self.decode_ids: list[int] = []
        self.decode_kv: list[int] = []
        self.cohort: object = None  # the scheduler's cohort object, opaque to the engine
        self.cohort_decodes = 0
        self.cohort_kv_sum = 0
        self.flagged = False  # its requests are marked in flight (pipelines only)
        self.start = 0.0
        self.end = 0.0
        self.stage_start: list[float] = []
        self.stage_end: list[float] = []

    @property
    def num_decodes(self) -> int:
        return len(self.decode_ids) + self.cohort_decodes

    @property
    def size(self) -> int:
        return len(self.prefill_ids) + self.num_decodes

    @property
    def num_tokens(self) -> int:
        return sum(self.prefill_chunks) + self.num_decodes

    def __bool__(self) -> bool:
        return bool(self.prefill_ids or self.decode_ids or self.cohort_decodes)

    def __repr__(self) -> str:
        prefills = list(zip(self.prefill_ids, self.prefill_chunks, strict=True))
        cohort = f", cohort={self.cohort_decodes}" if self.cohort_decodes else ""
        return (f"Batch(replica={self.replica}, prefills={prefills}, "
                f"decodes={self.decode_ids}{cohort})")
