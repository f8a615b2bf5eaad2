"""Reading Server-Sent Events off an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx


class Events:
    """Reads SSE events (blank-line separated blocks) off one streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_text()
        self._buffer = ""

    async def next(self, keep: Callable[[str], bool] = lambda _: True) -> str:
        while True:
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                if keep(block):
                    return block
            try:
                self._buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                raise AssertionError("the stream ended") from None

    async def take(self, count: int, keep: Callable[[str], bool] = lambda _: True) -> list[str]:
        return [await self.next(keep) for _ in range(count)]


def is_data(event: str) -> bool:
    """A snapshot (``id:`` + ``data:``), not a ``retry:`` hint or a keep-alive comment."""
    return event.startswith("id:")


def data_of(event: str) -> tuple[int, list[dict[str, Any]]]:
    """The id and the decoded snapshot of a data event."""
    lines = dict(line.split(": ", 1) for line in event.splitlines())
    return int(lines["id"]), json.loads(lines["data"])
