"""One iteration's work on a replica."""

from __future__ import annotations


class Batch:
    """Prefill chunks (request, tokens, tokens already cached) and decodes (request, context).

    ``decode_kv`` is each decode's context length including the token being decoded.
    Timing fields are filled by the engine when the batch is launched.
    """

    __slots__ = (
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
        self.flagged = False  # its requests are marked in flight (pipelines only)
        self.start = 0.0
        self.end = 0.0
        self.stage_start: list[float] = []
        self.stage_end: list[float] = []

    @property
    def size(self) -> int:
        return len(self.prefill_ids) + len(self.decode_ids)

    @property
    def num_tokens(self) -> int:
        return sum(self.prefill_chunks) + len(self.decode_ids)

    def __bool__(self) -> bool:
        return bool(self.prefill_ids or self.decode_ids)

    def __repr__(self) -> str:
        prefills = list(zip(self.prefill_ids, self.prefill_chunks, strict=True))
        return f"Batch(replica={self.replica}, prefills={prefills}, decodes={self.decode_ids})"
