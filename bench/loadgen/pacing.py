"""Downlink pacing jitter and playback stalls, as the device sees them.

Input: for one turn, the arrival times ``a_0 < a_1 < ... < a_{n-1}`` (device clock,
``time.monotonic()``) of the Opus packets the simulated firmware accepted for playback (received in
the speaking state, between ``tts/start`` and ``tts/stop``), the announced frame duration ``F``
(``frame_duration`` of the server hello, 60 ms by default) and the server's pre-buffer ``P``
(``audio.prebuffer_packets``, 5 by default).

Playback model. The device plays packet ``k`` from ``s_k = max(a_k, s_{k-1} + F)`` (``s_0 = a_0``).
If ``a_k > s_{k-1} + F`` the queue had run dry when packet ``k`` arrived: a **stall** (the listener
hears a gap of ``a_k - (s_{k-1} + F)``, typically the next sentence not synthesised in time). Packet
0 and every packet after a stall start a **segment**.

Pre-buffer. At the start of a segment the server sends the packet that starts playback plus ``P``
queued behind it back to back (edge_node.session.pacer: packet ``P`` is due at the anchor), so the
gaps into packets ``1 .. P`` of a segment are the burst, not pacing.

Jitter. The jitter samples are, for every packet ``k`` at position ``P + 1`` or later in its segment::

    j_k = | (a_k - a_{k-1}) - F |            (milliseconds)

i.e. how far each inter-arrival gap of the paced part deviates from one frame. The report gives
percentiles (p50/p95/p99/max) of all ``j_k`` of all turns (``pacing_jitter_ms.p99`` is the headline)
and, separately, the stalls (count and gap lengths).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_PREBUFFER", "analyse_turn", "turn_jitter_ms"]

DEFAULT_PREBUFFER = 5


def analyse_turn(
    arrivals: Sequence[float], frame_ms: float, prebuffer: int = DEFAULT_PREBUFFER
) -> tuple[list[float], list[float]]:
    """(jitter samples in ms, stall lengths in ms) of one turn from its arrival times in seconds."""
    if frame_ms <= 0:
        raise ValueError("frame_ms must be > 0")
    frame_s = frame_ms / 1000.0
    jitter: list[float] = []
    stalls: list[float] = []
    play_start = 0.0
    position = 0  # index of the packet within its segment
    for k, at in enumerate(arrivals):
        if k == 0:
            play_start, position = at, 0
            continue
        dry_at = play_start + frame_s
        if at > dry_at:
            stalls.append((at - dry_at) * 1000.0)
            play_start, position = at, 0
            continue
        play_start = dry_at
        position += 1
        if position > prebuffer:
            jitter.append(abs((at - arrivals[k - 1]) * 1000.0 - frame_ms))
    return jitter, stalls


def turn_jitter_ms(arrivals: Sequence[float], frame_ms: float, prebuffer: int = DEFAULT_PREBUFFER) -> list[float]:
    """The jitter samples (ms) of one turn (see the module doc)."""
    return analyse_turn(arrivals, frame_ms, prebuffer)[0]
