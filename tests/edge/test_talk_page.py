"""/talk in a real browser: Debian's chromium, driven by Playwright, talks to a real edge node.

Chromium's fake microphone plays a WAV of real speech (the bundled Piper voice, as the other edge
tests speak) into the page, which encodes it with WebCodecs Opus and streams it like a board; the
reply is decoded and played through an AudioContext. The page publishes its counters as data
attributes of <body>, and the tests wait on those with deadlines. Transcripts vary between CPUs, so
the assertions are about properties (some words heard, a reply, audio played), not exact text.

Every page fails its test on a script error or a CSP violation. Screenshots go to
test-artifacts/talk/.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trustme
from playwright.async_api import Page, async_playwright

from shared import tokens
from shared.client.speech import ZhSpeechUnavailable, save_wav, speak_16k
from tests.browser import CHROMIUM, CHROMIUM_ARGS, CSP_LISTENER
from tests.conftest import ARTIFACTS, ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import speech

pytestmark = pytest.mark.slow

SHOTS = ARTIFACTS / "talk"
# The page needs a microphone (Chromium's fake one) and plays audio without a click.
TALK_ARGS = [
    *CHROMIUM_ARGS,
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def _wav(tmp: Path, name: str, pcm: np.ndarray, lead_s: float = 0.8, tail_s: float = 2.0) -> Path:
    """Speech with silence around it, as the fake microphone's file (played once: %noloop)."""
    silence = np.zeros(int(16000 * lead_s), dtype=np.int16)
    out = np.concatenate([silence, pcm.astype(np.int16), np.zeros(int(16000 * tail_s), dtype=np.int16)])
    path = tmp / f"{name}.wav"
    save_wav(path, out, 16000)
    return path


class Talk:
    """One page of /talk and what it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []

    async def attr(self, name: str) -> str | None:
        return await self.page.evaluate(f"document.body.dataset[{name!r}] ?? null")

    async def num(self, name: str) -> float:
        return float(await self.attr(name) or 0)

    async def wait(self, what: str, check: Any, timeout_s: float = 90) -> None:
        """Poll ``check()`` (an async callable) until true; fail with ``what`` after the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.2)
        await self.shot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; page state: {await self.state()}")

    async def state(self) -> dict[str, str]:
        return await self.page.evaluate("({...document.body.dataset})")

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    async def connect(self, mode: str = "auto", token: str = "") -> None:
        page = self.page
        if mode == "manual":
            await page.check("input[name=mode][value=manual]")
        if token:
            await page.fill("#token", token)
        await page.click("#connect")

    async def connected(self) -> None:
        await self.wait("the session (server hello)", lambda: self.attr("connected"), 30)

    def assert_clean(self, allow: re.Pattern[str] | None = None) -> None:
        bad = [e for e in self.errors if not (allow and allow.search(e))]
        assert not bad, f"the page logged errors: {bad}"


@asynccontextmanager
async def talk_page(edge: EdgeProcess, wav: Path | None, query: str = "", base: str = "") -> AsyncIterator[Talk]:
    """A fresh chromium whose microphone plays ``wav`` once, on /talk of ``edge`` (``base``: https://…,
    whose throwaway certificate the browser is told to accept)."""
    args = list(TALK_ARGS)
    if base.startswith("https:"):
        args.append("--ignore-certificate-errors")
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = await browser.new_page()
            talk = Talk(page)
            page.on("console", lambda m: m.type == "error" and talk.errors.append(m.text))
            page.on("pageerror", lambda e: talk.errors.append(f"pageerror: {e}"))
            await page.add_init_script(CSP_LISTENER)
            await page.goto(f"{base or edge.http}/talk{query}")
            await page.wait_for_selector("body[data-ready]", state="attached", timeout=10_000)
            yield talk
        finally:
            await browser.close()


def _gt0(talk: Talk, name: str) -> Any:
    async def check() -> bool:
        return await talk.num(name) > 0

    return check


async def _assert_spoken_turn(talk: Talk, turns: int = 1) -> dict[str, str]:
    """The page heard a transcript, got a reply with audio, played it and showed the figure."""

    async def answered() -> bool:
        s = await talk.state()
        return int(s.get("turns", 0)) >= turns and float(s.get("audioSecondsPlayed", 0)) > 0.3

    await talk.wait(f"{turns} answered turn(s) with audio played", answered, 120)
    state = await talk.state()
    assert int(state["packetsSent"]) > 10
    assert int(state["packetsReceived"]) > 0 and int(state["framesDecoded"]) > 0
    assert 0 < int(state["lastLatencyMs"]) < 60_000
    heard = await talk.page.inner_text("#transcript .you")
    assert re.search(r"[A-Za-z\u3400-\u9fff]", heard), f"no transcript shown: {heard!r}"
    assert (await talk.page.inner_text("#transcript .reply")).strip(), "no reply text shown"
    latency = await talk.page.inner_text("#transcript .latency")
    assert re.search(r"end of speech → first audio: \d+ ms", latency)
    return state


# -- the tests -----------------------------------------------------------------------------------------
async def test_page_headers_and_csp(edge: EdgeProcess) -> None:
    """The page and its files come with a strict policy whose connect-src is this node's WebSocket only."""
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{edge.http}/talk")
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert f"connect-src ws://127.0.0.1:{edge.ws_port}/xiaozhi/v1/;" in csp
        assert "script-src 'self';" in csp and "unsafe" not in csp
        assert f'data-ws-url="ws://127.0.0.1:{edge.ws_port}/xiaozhi/v1/"' in r.text
        assert "<script>" not in r.text and "style=" not in r.text
        for name in ("talk.js", "opus-audio.js", "device-tools.js", "capture-worklet.js", "talk.css"):
            a = await http.get(f"{edge.http}/talk/{name}")
            assert a.status_code == 200 and a.headers["content-security-policy"] == csp, name
        assert (await http.get(f"{edge.http}/talk/../http_api.py")).status_code == 404
        assert (await http.get(f"{edge.http}/talk/index.html")).status_code == 404


async def test_csp_violation_is_caught(edge: EdgeProcess) -> None:
    """A connection to anywhere but the node is blocked, and the page's error check sees it."""
    async with talk_page(edge, None) as talk:
        await talk.page.evaluate("() => { try { new WebSocket('ws://127.0.0.1:9/elsewhere'); } catch (e) {} }")
        await talk.wait("the CSP violation report", lambda: asyncio.sleep(0, bool(talk.errors)), 5)
        assert any("connect-src" in e for e in talk.errors), talk.errors


async def test_spoken_question_hands_free(edge: EdgeProcess, tmp_path: Path) -> None:
    """Hands-free (auto): the node's VAD ends the utterance; stt, reply text, audio played, the figure."""
    wav = _wav(tmp_path, "question", speech("What is the capital of France?"))
    async with talk_page(edge, wav) as talk:
        await talk.connect("auto")
        await talk.connected()
        await _assert_spoken_turn(talk)
        await talk.wait("listening again after the reply", lambda: _is(talk, "state", "listening"), 30)
        await talk.shot("hands-free")
        talk.assert_clean()


async def _is(talk: Talk, name: str, value: str) -> bool:
    return await talk.attr(name) == value


async def test_push_to_talk(edge: EdgeProcess, tmp_path: Path) -> None:
    """Push to talk (manual): listen start on press, stop on release, then the answer."""
    pcm = speech("What is the capital of Germany?")
    wav = _wav(tmp_path, "ptt", pcm, lead_s=1.5, tail_s=1.0)
    async with talk_page(edge, wav) as talk:
        await talk.connect("manual")
        await talk.connected()
        await talk.wait("the microphone", lambda: talk.attr("mic"), 10)
        box = await talk.page.locator("#talk").bounding_box()
        assert box is not None
        await talk.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await talk.page.mouse.down()
        need = int((len(pcm) / 16000 + 1.2) / 0.06)  # the speech and some of the silence around it

        async def spoken() -> bool:
            return await talk.num("packetsSent") >= need

        await talk.wait("the question streamed while the button is held", spoken, 30)
        assert await talk.attr("state") == "listening"
        await talk.page.mouse.up()
        await _assert_spoken_turn(talk)
        await talk.wait("idle after the reply", lambda: _is(talk, "state", "idle"), 30)
        await talk.shot("push-to-talk")
        talk.assert_clean()


async def test_barge_in(edge: EdgeProcess, tmp_path: Path) -> None:
    """Speaking while the reply plays interrupts it (abort), and the new utterance is a new turn.

    The fake microphone plays its file once per page, so the second utterance goes in through the
    page's test-only hook (/talk?test=1), mixed into the microphone at its real-time pace."""
    wav = _wav(tmp_path, "long", speech("Tell me a long story about a dragon and a knight."))
    second = speech("What is the capital of Italy?").astype(np.float32) / 32768
    second = np.concatenate([second, np.zeros(16000 * 2, dtype=np.float32)])
    async with talk_page(edge, wav, "?test=1") as talk:
        await talk.connect("auto")
        await talk.connected()
        await talk.wait("the first reply playing", lambda: _gt0(talk, "framesDecoded")(), 120)
        assert await talk.attr("state") == "speaking"
        played_before = await talk.num("audioSecondsPlayed")
        await talk.page.evaluate("(s) => window.talkTest.inject(s)", second.round(5).tolist())
        await talk.wait("the barge-in", lambda: _gt0(talk, "bargeIns")(), 10)
        assert await talk.attr("state") in ("listening", "thinking")
        await _assert_spoken_turn(talk, turns=2)
        assert await talk.page.locator("#transcript li").count() >= 2
        assert await talk.page.locator("#transcript li .interrupted").count() == 1
        assert played_before < 5
        await talk.shot("barge-in")
        talk.assert_clean()


async def test_text_turn_and_device_tools(edge: EdgeProcess) -> None:
    """A typed question is answered; "set the volume to 30" goes through the page's MCP tools."""
    async with talk_page(edge, None) as talk:
        await talk.connect("manual")
        await talk.connected()
        await talk.page.fill("#text", "What is two plus two?")
        await talk.page.press("#text", "Enter")

        async def answered() -> bool:
            return await talk.num("turns") >= 1 and await talk.num("audioSecondsPlayed") > 0.3

        await talk.wait("the text turn's answer", answered, 90)
        assert "two plus two" in (await talk.page.inner_text("#transcript .you")).lower()
        assert int(await talk.attr("lastLatencyMs") or -1) > 0
        await talk.wait("idle after the reply", lambda: _is(talk, "state", "idle"), 30)
        await talk.page.fill("#text", "set the volume to 30")
        await talk.page.press("#text", "Enter")
        await talk.wait("the volume set by the node", lambda: _is(talk, "volume", "30"), 60)
        assert (await talk.page.inner_text("#volume")).strip() == "30"
        await talk.wait("idle after the reply", lambda: _is(talk, "state", "idle"), 30)
        await talk.page.fill("#text", "set the brightness to 40")
        await talk.page.press("#text", "Enter")
        await talk.wait("the brightness set by the node", lambda: _is(talk, "brightness", "40"), 60)
        assert await talk.num("turns") == 3
        await talk.shot("text-and-tools")
        talk.assert_clean()


@dataclass
class SecureNode:
    edge: EdgeProcess
    ring: tokens.KeyRing
    ca: Path  # the throwaway CA that signed the node's certificate


@pytest.fixture(scope="module")
def secure_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNode]:
    """A node with a certificate (wss://, https://) that takes fleet device tokens only: timing
    engines (it starts in seconds; nothing here needs a real answer)."""
    work = tmp_path_factory.mktemp("talk-secure")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = work / "cert.pem", work / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ring = tokens.KeyRing.create(work / "keys")
    node = start_edge(
        "edge-talk-secure",
        {
            "XIAOZHI__TIMING__PROFILE": str(ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"),
            "XIAOZHI__SERVER__TLS_CERT_FILE": str(cert),
            "XIAOZHI__SERVER__TLS_KEY_FILE": str(key),
            "XIAOZHI__AUTH__DEVICE_TOKENS": "true",
            "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(ring.keyset_path),
        },
    )
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    yield SecureNode(node, ring, work / "ca.pem")
    stop_edge(node)


# The browser's own line for a refused handshake (the page cannot read the 401 itself).
REFUSED = re.compile(r"WebSocket connection to .* failed")


async def test_device_tokens_over_wss(secure_edge: SecureNode) -> None:
    """A node with a certificate and device tokens: the page is served over https with a wss://
    connect-src, asks for a token, is refused without one (and says so), and connects with the
    token provisioning signed for its device id, sent as the authorization query parameter."""
    edge = secure_edge.edge
    base = f"https://127.0.0.1:{edge.http_port}"
    async with talk_page(edge, None, base=base) as talk:
        trust = ssl.create_default_context(cafile=str(secure_edge.ca))
        async with httpx.AsyncClient(verify=trust) as http:
            csp = (await http.get(f"{base}/talk")).headers["content-security-policy"]
        assert f"connect-src wss://127.0.0.1:{edge.ws_port}/xiaozhi/v1/;" in csp
        assert await talk.page.is_visible("#token")
        await talk.connect("manual")
        await talk.wait("the refusal", lambda: talk.attr("refused"), 15)
        assert "needs a device token" in await talk.page.inner_text("#status")
        await talk.shot("token-refused")
        device_id = (await talk.page.input_value("#device-id")).lower()
        await talk.connect("manual", token=secure_edge.ring.issue(device_id, ttl_s=600))
        await talk.connected()
        assert await talk.attr("refused") is None and await talk.attr("error") is None
        await talk.shot("token-accepted")
        talk.assert_clean(allow=REFUSED)


async def test_chinese_turn(bilingual: EdgeProcess, tmp_path: Path) -> None:
    """A spoken Mandarin question on a node serving [en, zh]: heard and answered in Chinese."""
    try:
        pcm = speak_16k("中国的首都是哪里？")
    except ZhSpeechUnavailable as exc:
        pytest.skip(str(exc))
    wav = _wav(tmp_path, "zh", pcm)
    async with talk_page(bilingual, wav) as talk:
        await talk.connect("auto")
        await talk.connected()
        await _assert_spoken_turn(talk)
        assert re.search(r"[\u3400-\u9fff]", await talk.page.inner_text("#transcript .you"))
        assert re.search(r"[\u3400-\u9fff]", await talk.page.inner_text("#transcript .reply"))
        await talk.shot("chinese")
        talk.assert_clean()
