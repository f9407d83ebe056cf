"""The local LLM as an async stream: deltas from a worker thread, handed to the event loop as they come.

llama.cpp generates on an LLM pool thread; the reply reads sentences as they form, so the deltas cross
from that thread to the loop one by one. Closing the stream stops generation at once (a barge-in must
free the worker for the next turn), and once a reply's first clause is out, the rest runs at tail
priority so other devices' first sentences go first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from edge_node import metrics
from edge_node.engines import priority
from edge_node.engines.llm import ChatModel
from edge_node.engines.pool import FIRST, StagePool

__all__ = ["FIRST_CLAUSE_CHARS", "LocalChat"]

# Characters of LLM output after which the rest of a reply runs at tail priority: about a clause,
# what the sentence splitter needs before the first TTS job can start.
FIRST_CLAUSE_CHARS = 48


class LocalChat:
    """The router's local LLM route: chat streams on the node's LLM pool."""

    def __init__(self, pool: StagePool[ChatModel]) -> None:
        self._pool = pool

    async def chat_stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        deadline: float | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> AsyncIterator[str]:
        """Stream LLM deltas from an LLM worker; closing the iterator stops generation at once."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()
        started = time.perf_counter()

        def put(item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        ran = threading.Event()

        def work(llm: ChatModel) -> None:
            ran.set()
            said = 0
            try:
                for delta in llm.stream_chat(messages, max_tokens=max_tokens, cancel=cancel, tools=tools):
                    if cancel.is_set():
                        break
                    put(delta)
                    said += len(delta)
                    if said >= FIRST_CLAUSE_CHARS and said - len(delta) < FIRST_CLAUSE_CHARS:
                        priority.demote()  # the device has its first clause: the rest is tail work
            except Exception as exc:
                put(exc)  # the consumer raises it after the deltas that came before it
                raise  # and the pool sees its instance fail (counted; replaced when it can reload)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer to raise
                put(exc)
            finally:
                put(None)

        job = asyncio.ensure_future(self._pool.run(work, FIRST, deadline))
        job.add_done_callback(lambda t: t.cancelled() or t.exception())  # its error reaches us through the queue
        first = True
        try:
            while True:
                if job.done():
                    if not ran.is_set():
                        job.result()  # raises: the pool refused the job (BusyError) or closed
                    item = await queue.get()  # the worker ran: everything up to None is queued
                else:
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        continue
                    item = getter.result()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if first:
                    metrics.STAGE_SECONDS.labels(stage="llm_first_token").observe(time.perf_counter() - started)
                    first = False
                yield item
        finally:
            cancel.set()
            job.cancel()
