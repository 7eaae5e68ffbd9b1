"""Dead letters: a message that cannot be decoded or processed goes to the DLQ topic with
its original bytes and headers plus the reason, and the processor keeps going."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

H_TOPIC = "aitl.dlq.topic"
H_PARTITION = "aitl.dlq.partition"
H_OFFSET = "aitl.dlq.offset"
H_ERROR_CLASS = "aitl.dlq.error_class"
H_ERROR = "aitl.dlq.error"
H_STAGE = "aitl.dlq.stage"
H_TIME = "aitl.dlq.time_ms"

Headers = list[tuple[str, bytes]]


def dead_letter_headers(
    original: Headers | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    error: BaseException | str,
    stage: str = "decode",
    now_ms: int | None = None,
    reason: str | None = None,
) -> Headers:
    """The original headers plus where the message came from and why it failed.

    ``reason`` replaces the error's own text, which may quote the message's content (the
    processors pass a redacted summary: headers are shown by ``aitl dlq show``)."""
    error_class = type(error).__name__ if isinstance(error, BaseException) else "Rejected"
    reason = reason if reason is not None else getattr(error, "reason", None) or str(error)
    extra = [
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_ERROR_CLASS, error_class.encode()),
        (H_ERROR, reason.encode()[:4000]),
        (H_STAGE, stage.encode()),
        (H_TIME, str(now_ms if now_ms is not None else int(time.time() * 1000)).encode()),
    ]
    return [*(original or []), *extra]


@dataclass(frozen=True)
class DeadLetter:
    """A DLQ record read back, for `aitl dlq show` and tests."""

    topic: str
    partition: int
    offset: int
    error_class: str
    error: str
    stage: str
    time_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes | None, headers: Any) -> DeadLetter:
        h: dict[str, bytes] = {}
        for k, v in headers or []:
            h[k] = v or b""
        return cls(
            topic=h.get(H_TOPIC, b"?").decode(),
            partition=int(h.get(H_PARTITION, b"-1")),
            offset=int(h.get(H_OFFSET, b"-1")),
            error_class=h.get(H_ERROR_CLASS, b"?").decode(),
            error=h.get(H_ERROR, b"").decode(errors="replace"),
            stage=h.get(H_STAGE, b"").decode(),
            time_ms=int(h.get(H_TIME, b"0")),
            key=key,
            value=value,
            headers=[(k, v) for k, v in headers or [] if not k.startswith("aitl.dlq.")],
        )
