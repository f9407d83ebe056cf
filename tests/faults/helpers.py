"""Shared parts of the fault tests: edges on timing engines with a test's own profile, a cloud tier
on timing stand-ins, a raw WebSocket device, and the one-line record of what a device observed.

Timing engines (edge_node/engines/timing.py) make an edge start in about a second and keep the
2-core box free for the fault itself; the faults here are about the server's plumbing (sockets,
pools, caches, the NATS link), not about what the models say. Each test prints one line of what its
devices observed and appends it to ``test-artifacts/faults-observed.txt`` for the closing note.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tests.cloud.deployment import Cloud, start_cloud_around
from tests.conftest import ARTIFACTS, ROOT, EdgeProcess
from tests.edge.helpers import RawPeer
from tests.processes import ready_field, spawn

SHIPPED_PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"
# A reply of many sentences: long enough to be mid-way through when a fault hits it.
LONG_REPLY = " ".join(
    f"This is sentence number {i} of a long stand-in reply, spoken at the voice's pace." for i in range(1, 41)
)


def observed(line: str) -> None:
    """Print what the device observed (pytest -s shows it) and keep it for the closing note."""
    print(f"\nOBSERVED {line}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "faults-observed.txt").open("a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def write_profile(directory: Path, name: str = "profile.yaml", **changes: Any) -> Path:
    """The shipped timing profile with top-level sections updated (``llm={"reply": ...}``, ``faults=...``)."""
    profile = yaml.safe_load(SHIPPED_PROFILE.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(profile.get(key), dict):
            profile[key].update(value)
        else:
            profile[key] = value
    path = directory / name
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


def timing_env(profile: Path, **extra: str) -> dict[str, str]:
    """Environment for an edge on timing engines with small pools (the box has 2 cores)."""
    return {
        "XIAOZHI__TIMING__PROFILE": str(profile),
        "XIAOZHI__ASR__WORKERS": "1",
        "XIAOZHI__TTS__WORKERS": "2",
        **extra,
    }


async def metrics_text(edge: EdgeProcess) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/metrics", timeout=10)).text


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class RssSampler:
    """The edge's RSS every 0.2 s on a thread (never stalls the test's event loop): peak and last."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mb(self.pid))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(rss_mb(self.pid))
            except psutil.Error:
                return

    @property
    def growth_mb(self) -> float:
        return max(self.samples) - self.samples[0]


def log_lines(edge: EdgeProcess, needle: str, after: int = 0) -> list[str]:
    return [line for line in edge.log_text()[after:].splitlines() if needle in line]


async def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step_s)
    return predicate()


# ------------------------------------------------------------------------------------ raw device
HELLO_NO_MCP = {
    "type": "hello",
    "version": 1,
    "features": {},
    "transport": "websocket",
    "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
}


class RawDevice(RawPeer):
    """A hand-written device whose test controls the TCP side: its receive buffer size (``rcvbuf``)
    and when it stops reading (``pause``: the kernel stops acknowledging)."""

    @classmethod
    async def device(cls, port: int, device_id: str, rcvbuf: int | None = None) -> RawDevice:
        peer = await cls.connect(port, headers={"Device-Id": device_id, "Client-Id": "fault-test"}, rcvbuf=rcvbuf)
        if " 101 " not in peer.status_line:
            raise RuntimeError(f"upgrade refused: {peer.status_line[:80]!r}")
        return peer

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.send(json.dumps(obj).encode(), opcode=1)

    async def hello(self, message: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send_json(message or HELLO_NO_MCP)
        opcode, data = await self.recv_frame(10)
        assert opcode == 1, (opcode, data[:80])
        return json.loads(data)

    def pause(self) -> None:
        """Stop reading from the socket: the receive buffer fills and the window closes."""
        self.writer.transport.pause_reading()

    def resume(self) -> None:
        self.writer.transport.resume_reading()

    async def drain_until_closed(self, limit_s: float) -> tuple[int, str]:
        """Read what is left until the connection ends: (frames read, how it ended)."""
        count = 0
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                opcode, data = await self.recv_frame(max(0.1, deadline - time.monotonic()))
            except asyncio.IncompleteReadError:
                return count, "EOF without a close frame"
            except ConnectionResetError:
                return count, "connection reset (no close frame)"
            except TimeoutError:
                return count, "still open"
            count += 1
            if opcode == 8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                return count, f"close frame {code} {data[2:].decode(errors='replace')!r}"
        return count, "still open"


# ---------------------------------------------------------------------------------- cloud tier
# Open questions go to the cloud; short limits so a fault is noticed in seconds, not a default's minute.
ROUTING = """
llm:
  default: local_llm
  rules:
    - {name: open-question, when: {complexity_at_least: 0.6}, route: cloud}
  overflow: null
routes:
  cloud: {accept_timeout_s: 1.0, first_token_timeout_s: 4.0, chunk_timeout_s: 2.0, retries: 1, max_tokens: MAX_TOKENS,
          breaker: {failures: 3, open_s: 2}}
  local_llm: {first_token_timeout_s: 20.0}
asr: {cloud: never}
"""


def routing_file(directory: Path, cloud_max_tokens: int = 40) -> Path:
    """The fault tests' routing policy; the cloud's answers are cut to ``cloud_max_tokens`` words."""
    path = directory / "routing.yaml"
    path.write_text(ROUTING.replace("MAX_TOKENS", str(cloud_max_tokens)), encoding="utf-8")
    return path


ESCALATED = "Explain why the sky is blue and how sunsets get their colours"
LOCAL = "What should I name my new puppy?"  # personal: the local LLM, never an answer-cache entry
CLOUD_REPLY = (
    "The cloud worker answers this one: sunlight scatters off the air, blue light most of all, and at "
    "sunset the light crosses so much air that mostly the red and orange is left to reach your eyes."
)


def start_timing_cloud(work: Path, edges: list[str], per_token_s: float = 0.05) -> Cloud:
    """A hub, one leaf per edge and a real cloud LLM worker in front of the timing stand-in for vLLM
    (bench/fleet/timing_openai.py): the whole escalation path runs, no model uses the CPU."""
    openai = spawn(
        "fault-timing-openai",
        [
            sys.executable,
            "-m",
            "bench.fleet.timing_openai",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--first-token-s",
            "0.1",
            "--per-token-s",
            str(per_token_s),
            "--reply",
            CLOUD_REPLY,
        ],
        "READY timing-openai",
    )
    return start_cloud_around(work, edges, openai, ready_field(openai, "url"), link_s=20)


def cloud_edge_env(cloud: Cloud, edge: str, routing: Path, profile: Path, **extra: str) -> dict[str, str]:
    return timing_env(
        profile,
        XIAOZHI__NODE_ID=edge,
        XIAOZHI__NATS__URL=cloud.leaves[edge].url,
        XIAOZHI__NATS__HEARTBEAT_S="1",
        XIAOZHI__ROUTING__FILE=str(routing),
        XIAOZHI__CACHE__ENABLED="false",
        **extra,
    )


async def cloud_link_up(edge: EdgeProcess, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{edge.http}/stats", timeout=5)).json()["edge"]["cloud_link"]:
                    return True
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.2)
    return False
