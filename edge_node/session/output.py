"""The wire side of one reply: every message a reply sends, bound to its session and generation.

``tts/start`` with the emotion goes out once, before the first sentence, and ``tts/stop`` once, at the
end, whichever way the reply ends (spoken answer, canned phrase, apology); sentences and their paced
audio in between. Every message carries the reply's generation, so after a barge-in the session
drops what this object still tries to send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_node.config import AudioConfig
from edge_node.session.pacer import Pacer
from edge_node.session.port import ReplyPort
from shared.protocol import messages as msgs

__all__ = ["ReplyOutput"]


class ReplyOutput:
    def __init__(self, port: ReplyPort, gen: int, audio: AudioConfig, on_first_audio: Callable[[float], None]) -> None:
        self._port = port
        self._gen = gen
        self._audio = audio
        self._on_first_audio = on_first_audio
        self.started = False  # tts/start sent
        self.stopped = False  # tts/stop sent (or being sent)
        self.first_audio_at: float | None = None  # the answer's, not a filler's
        self.filler_at: float | None = None
        self.sentences = 0  # tts/sentence_start sent (a filler's included)
        self.pacer: Pacer | None = None
        self._emotion = ""
        self._in_filler = False

    async def _send(self, msg: dict[str, object]) -> bool:
        return await self._port.send_json(msg, gen=self._gen)

    async def stt(self, text: str) -> None:
        await self._send(msgs.stt(self._port.session_id, text))

    async def start(self, emotion: str) -> None:
        """``tts/start`` and the emotion, once per reply (after a filler: the answer's emotion only)."""
        if self.started:
            if self._in_filler is False and self._emotion == "thinking" and emotion != self._emotion:
                self._emotion = emotion
                await self._send(msgs.llm_emotion(self._port.session_id, emotion))
            return
        self.started = True
        self._emotion = emotion
        await self._send(msgs.tts_start(self._port.session_id))
        await self._send(msgs.llm_emotion(self._port.session_id, emotion))

    async def filler(self, text: str, packets: list[bytes]) -> None:
        """A short phrase while the answer is still being prepared. Its audio is not the answer's first
        audio (the latency metrics measure the answer); the answer continues on the same pacer, so the
        device's queue holds one pre-buffer, not two."""
        self._in_filler = True
        try:
            await self.start("thinking")
            await self.sentence(text)
            await self.play(packets)
        finally:
            self._in_filler = False

    async def sentence(self, text: str) -> None:
        self.sentences += 1
        await self._send(msgs.tts_sentence_start(self._port.session_id, text))

    def new_pacer(self) -> Pacer:
        """Pacing restarts (with its prebuffer) for each spoken answer, unless a filler is playing on it."""
        if self.pacer is not None and self.filler_at is not None:
            return self.pacer
        self.pacer = Pacer(self._audio.downlink_frame_ms, self._audio.prebuffer_packets, self._send_audio)
        return self.pacer

    async def play(self, packets: list[bytes]) -> None:
        """Send packets at the device's playback pace (the pacer in use, else a new one)."""
        await (self.pacer or self.new_pacer()).play(packets)

    def remaining_playout(self) -> float:
        """Seconds until the device has played everything sent so far."""
        return self.pacer.remaining_playout() if self.pacer is not None else 0.0

    async def stop(self) -> None:
        """``tts/stop``, once per reply: the device stops playing and listens again."""
        if self.stopped:
            return
        self.stopped = True  # from the moment it is on its way: the reply's end is no longer interruptible
        await self._send(msgs.tts_stop(self._port.session_id))

    async def _send_audio(self, packet: bytes) -> None:
        sent = await self._port.send_audio(packet, gen=self._gen)
        if sent and self._in_filler:
            self.filler_at = self.filler_at or time.monotonic()
            return
        if sent and self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
            self._on_first_audio(self.first_audio_at)
