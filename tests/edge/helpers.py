"""Helpers for the edge-node tests: speech, a raw WebSocket peer, audio checks."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from functools import lru_cache
from typing import Self

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from shared.client.device import DeviceClient, Turn
from shared.client.speech import synthesize_16k
from shared.metrics import sample_sum


@lru_cache(maxsize=32)
def speech(text: str) -> np.ndarray:
    """Piper-synthesised 16 kHz speech, cached on disk by the client module."""
    return synthesize_16k(text)


def rms(pcm: np.ndarray) -> float:
    if pcm.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none exists yet)."""
    return sample_sum(metrics_text, name, **labels)


def metric_labels(metrics_text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called ``name``."""
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name
    ]


async def text_turn(
    url: str, device_id: str, text: str, limit_s: float = 90, client: DeviceClient | None = None
) -> Turn:
    """One device connects, asks ``text`` as a text turn (``listen/detect``) and hangs up. Pass ``client``
    to read what else the device saw afterwards (its MCP tool calls)."""
    client = client or DeviceClient(url, device_id=device_id)
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect(text)
        return await client.wait_turn_end(limit_s)
    finally:
        await client.close()


async def metric_at_least(http: str, name: str, value: float, timeout_s: float = 30, **labels: str) -> float:
    """Wait until the edge's /metrics shows ``name`` (summed over samples matching ``labels``) at
    ``value`` or more; returns the last reading. Work the edge does after a turn's tts/stop (storing
    the answer, the cache writes, the turn's own count) lands later on a busy machine: a test waits
    for it with a deadline instead of reading once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            current = sample_sum((await client.get(f"{http}/metrics", timeout=10)).text, name, **labels)
            if current >= value or loop.time() > deadline:
                return current
            await asyncio.sleep(0.1)


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


class RawPeer:
    """A hand-written WebSocket client: sees every frame the server sends, pings included,
    and never answers a ping, like firmware that does not implement pong."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status_line: str) -> None:
        self.reader = reader
        self.writer = writer
        self.status_line = status_line

    @classmethod
    async def connect(
        cls, port: int, path: str = "/xiaozhi/v1/", headers: dict[str, str] | None = None, rcvbuf: int | None = None
    ) -> Self:
        """``rcvbuf`` sets the socket's receive buffer before it connects, which fixes the TCP window
        the server sees (a device that stops reading then stalls the server's sends quickly)."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return cls(reader, writer, head.split(b"\r\n", 1)[0].decode())

    async def send(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def recv_frame(self, wait_s: float) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(2), wait_s)
        opcode = head[0] & 0x0F
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return opcode, await self.reader.readexactly(n)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


HELLO = (
    b'{"type":"hello","version":1,"features":{"mcp":true},"transport":"websocket",'
    b'"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)
