"""The server side of device MCP: the device is the MCP server, each session is its client.

Requests carry numeric ids (the firmware drops string ids without a reply), tools/list is
followed through every page, and dotted tool names are mapped to names an LLM may call.
Replies are matched to waiting futures; a device that never answers costs a timeout, not a
stuck session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edge_node import metrics
from edge_node.config import McpConfig
from shared.protocol import mcp
from shared.protocol.errors import ProtocolError


class DeviceMcp:
    def __init__(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        cfg: McpConfig,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._send = send
        self._cfg = cfg
        self._log = log
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[mcp.McpResponse]] = {}
        self.tools: dict[str, mcp.Tool] = {}
        self.names = mcp.ToolNameMap()
        self.server_info: dict[str, Any] = {}
        self.ready = asyncio.Event()

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    async def _request(self, payload_for: Callable[[int], dict[str, Any]]) -> mcp.McpResponse:
        req_id = self._new_id()
        future: asyncio.Future[mcp.McpResponse] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            await self._send(payload_for(req_id))
            return await asyncio.wait_for(future, self._cfg.tool_call_timeout_s)
        finally:
            self._pending.pop(req_id, None)

    async def start(self) -> None:
        """initialize, then every page of tools/list; run as a task after the hello."""
        try:
            init = await self._request(lambda i: mcp.initialize_request(i, self._cfg.vision_url))
            if init.error is not None:
                self._log.warning("device MCP initialize failed: %s", init.error.message)
                return
            self.server_info = dict((init.result or {}).get("serverInfo") or {})
            cursor = ""
            for _ in range(self._cfg.max_list_pages):
                page = await self._request(lambda i, c=cursor: mcp.tools_list_request(i, c))
                if page.error is not None:
                    self._log.warning("device MCP tools/list failed: %s", page.error.message)
                    break
                tools, cursor = mcp.parse_tools_list(page.result or {})
                for tool in tools:
                    if tool.name not in self.tools:
                        self.tools[tool.name] = tool
                        self.names.add(tool)
                if not cursor:
                    break
            self._log.info("device MCP ready: %d tools (%s)", len(self.tools), ", ".join(sorted(self.tools)))
        except TimeoutError:
            self._log.warning("device MCP did not answer within %.0f s", self._cfg.tool_call_timeout_s)
        except ProtocolError as exc:
            self._log.warning("device MCP sent a bad tools list: %s", exc)
        finally:
            self.ready.set()

    def handle(self, payload: dict[str, Any]) -> None:
        """A device MCP message: a reply to one of ours, or a notification."""
        try:
            parsed = mcp.parse_payload(payload)
        except ProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(code=exc.code).inc()
            self._log.warning("bad MCP payload from device: %s", exc)
            return
        if isinstance(parsed, mcp.McpNotification):
            self._log.debug("device MCP notification %s", parsed.method)
            return
        if not isinstance(parsed, mcp.McpResponse):
            return
        future = self._pending.get(parsed.id) if parsed.id is not None else None
        if future is None or future.done():
            self._log.warning("MCP reply with unknown id %r ignored", parsed.id)
            return
        future.set_result(parsed)

    def has_tool(self, name: str) -> bool:
        return name in self.tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Call a device tool; raises McpError (device error) or TimeoutError."""
        try:
            reply = await self._request(lambda i: mcp.tools_call_request(i, name, arguments))
        except TimeoutError:
            metrics.MCP_CALLS.labels(result="timeout").inc()
            raise
        if reply.error is not None:
            metrics.MCP_CALLS.labels(result="error").inc()
            raise reply.error
        try:
            text = mcp.call_result_text(reply.result or {})
        except mcp.McpError:
            metrics.MCP_CALLS.labels(result="error").inc()
            raise
        metrics.MCP_CALLS.labels(result="ok").inc()
        return text

    def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
