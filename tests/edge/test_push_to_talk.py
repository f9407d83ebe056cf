"""Push-to-talk (manual mode) holds the utterance until listen/stop, capped at vad.max_utterance_s.

The cap counts packets times the frame length the device announced in its hello. It used to assume
20 ms frames, so a firmware device (60 ms frames) could hold three times the limit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from edge_node.config import EdgeConfig
from shared.client.device import DeviceClient
from tests.conftest import EdgeProcess
from tests.edge.helpers import speech

pytestmark = pytest.mark.slow


def _asr_audio_ms(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"asr: .* \((\d+) ms audio", log)]


async def test_a_long_push_to_talk_utterance_is_capped_by_the_announced_frame_length(edge: EdgeProcess) -> None:
    cap_s = EdgeConfig().vad.max_utterance_s  # the session edge runs the default
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:08:01", frame_ms=60)
    await client.connect()
    try:
        await client.listen_start("manual")
        client.turn_reset()
        offset = edge.log_offset()
        one = speech("Tell me about the history of the city of Rome and its emperors.")
        pcm = np.tile(one, int(np.ceil((cap_s + 4) * 16000 / one.size)))[: int((cap_s + 4) * 16000)]
        packets = client.encode_speech(pcm)
        assert len(packets) * 60 > (cap_s + 3) * 1000
        # Faster than real time but within the edge's audio burst: the cap is what is tested, not pacing.
        assert await client.send_opus_packets(packets, realtime=False) == len(packets)
        await client.listen_stop()
        await client.wait_turn_end(120)
    finally:
        await client.close()
    heard = _asr_audio_ms(edge.log_text()[offset:])
    assert heard, edge.log_text()[offset:][-2000:]
    # Kept: packets while packets x 60 ms < the cap, i.e. the cap rounded up to a whole frame.
    assert cap_s * 1000 - 60 <= heard[-1] <= cap_s * 1000 + 60, heard
