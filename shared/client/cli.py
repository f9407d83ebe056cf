"""``xiaozhi-device``: talk to a Xiaozhi server like a real device, from the command line.

    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --say "what time is it"
    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --wav question.wav --out reply.wav
    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --text "tell me a joke" --json

Each turn: ``listen/start`` (mode), then the speech as Opus at real-time pace (manual mode:
``listen/stop`` after it; auto/realtime: trailing silence until the server's VAD answers), or a
``listen/detect`` text turn. Prints the transcript, the reply and the latencies (``--json``: one
JSON object per turn, on one line); with ``--out`` it also saves the decoded reply audio as WAV at
the rate the server hello announced (``reply-1.wav``, ``reply-2.wav``... with several turns).
Exit code 0 when every turn completed, 1 when one did not or the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from shared import cli
from shared.client.device import DeviceClient, DeviceClientError, Turn
from shared.client.speech import ZhSpeechUnavailable, load_wav_16k, save_wav, speak_16k

__all__ = ["main"]

PROG = "xiaozhi-device"


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--url", required=True, help="server WebSocket URL, e.g. ws://host:8000/xiaozhi/v1/")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--wav", type=Path, help="speak this WAV file (any rate / channels)")
    what.add_argument(
        "--say",
        help="speak this text (the bundled Piper voice; Mandarin, by its characters, with the bundled Chinese voice)",
    )
    what.add_argument("--text", help="send this text as a listen/detect turn (no audio)")
    p.add_argument("--mode", choices=("auto", "manual", "realtime"), default="auto", help="listening mode")
    p.add_argument("--device-id", default="d8:3b:da:00:00:01", help="Device-Id (MAC)")
    p.add_argument("--client-id", default=None, help="Client-Id (UUID; random if omitted)")
    p.add_argument("--token", default="", help="token for the Authorization header (Bearer is added)")
    p.add_argument("--protocol-version", type=int, choices=(1, 2, 3), default=1, help="binary framing version")
    p.add_argument("--frame-ms", type=int, choices=(20, 40, 60), default=60, help="uplink Opus frame duration")
    p.add_argument("--query", action="store_true", help="send device-id/client-id/token as query parameters")
    p.add_argument("--out", type=Path, help="save the reply audio as this WAV file (default: not saved)")
    p.add_argument("--json", action="store_true", help="print one JSON object per turn instead of the text report")
    p.add_argument("--turns", type=int, default=1, help="number of turns on one connection")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each turn to finish")
    p.add_argument(
        "--trailing-silence-ms",
        type=int,
        default=None,
        help="silence streamed after the speech (default: 0 in manual mode, 1500 otherwise)",
    )
    return p


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _out_path(out: Path, turn: int, turns: int) -> Path:
    return out if turns == 1 else out.with_name(f"{out.stem}-{turn}{out.suffix or '.wav'}")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _turn_json(n: int, turns: int, turn: Turn, client: DeviceClient, saved: Path | None) -> dict[str, Any]:
    """What ``--json`` prints for one turn: the text report's fields, as numbers and lists."""
    return {
        "turn": n,
        "turns": turns,
        "session_id": client.session_id,
        "transcript": turn.stt_text,
        "reply": " ".join(turn.sentences),
        "sentences": turn.sentences,
        "emotion": turn.emotion,
        "latency_ms": {
            "stt": _ms(turn.stt_ms),
            "first_audio": _ms(turn.first_audio_ms),
            "tts_stop": _ms(turn.tts_stop_ms),
            "hello": _ms(client.hello_latency_ms),
        },
        "audio": {
            "packets": turn.audio_packets,
            "duration_s": round(turn.duration_s, 3),
            "sample_rate": turn.sample_rate,
            "max_queue_depth": turn.max_queue_depth,
            "dropped_packets": turn.dropped_packets,
        },
        "order": turn.order,
        "saved": None if saved is None else str(saved),
    }


def _print_turn(n: int, turns: int, turn: Turn, saved: Path | None) -> None:
    print(f"turn {n}/{turns}")
    print(f"  transcript  {turn.stt_text!r}")
    if turn.sentences:
        for i, sentence in enumerate(turn.sentences):
            print(f"  {'reply' if i == 0 else '':<10}  {sentence!r}")
    else:
        print("  reply       (no sentences)")
    print(f"  emotion     {turn.emotion or '-'}")
    print(
        f"  latency     end of speech -> stt {_fmt_ms(turn.stt_ms)}, -> first audio {_fmt_ms(turn.first_audio_ms)}, "
        f"-> tts/stop {_fmt_ms(turn.tts_stop_ms)}"
    )
    print(
        f"  audio       {turn.audio_packets} packets, {turn.duration_s:.2f} s at {turn.sample_rate} Hz, "
        f"max queue depth {turn.max_queue_depth}"
    )
    print(f"  order       {' '.join(turn.order)}")
    if saved is not None:
        print(f"  saved       {saved}")


async def _run(args: argparse.Namespace) -> int:
    speech: np.ndarray | None = None
    if args.wav is not None:
        try:
            speech = load_wav_16k(args.wav)
        except (OSError, ValueError, EOFError) as exc:
            raise cli.CliError(f"cannot read {args.wav}: {exc}", cli.EXIT_USAGE) from exc
    elif args.say is not None:
        try:
            speech = speak_16k(args.say)
        except ZhSpeechUnavailable as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    trailing = args.trailing_silence_ms
    if trailing is None:
        trailing = 0 if args.mode == "manual" else 1500

    client = DeviceClient(
        args.url,
        device_id=args.device_id,
        client_id=args.client_id,
        token=args.token,
        protocol_version=args.protocol_version,
        headers_in_query=args.query,
        frame_ms=args.frame_ms,
    )
    try:
        await client.connect()
    except DeviceClientError as exc:
        raise cli.CliError(str(exc)) from exc
    params = client.server_audio_params or {}
    if not args.json:
        print(
            f"connected   session {client.session_id!r}, hello {_fmt_ms(client.hello_latency_ms)}, "
            f"downlink {params.get('format', 'opus')} {client.downlink_rate} Hz / {client.downlink_frame_ms} ms"
        )
    try:
        for n in range(1, args.turns + 1):
            await client.listen_start(args.mode)
            if speech is None:
                await client.listen_detect(args.text)
            else:
                await client.send_speech(speech, trailing_silence_ms=trailing, realtime=True)
                if args.mode == "manual":
                    await client.listen_stop()
            try:
                turn = await client.wait_turn_end(args.timeout)
            except TimeoutError as exc:
                raise cli.CliError(f"turn {n}: no tts/stop within {args.timeout:g} s") from exc
            saved = None
            if args.out is not None and turn.pcm.size:
                saved = _out_path(args.out, n, args.turns)
                save_wav(saved, turn.pcm, turn.sample_rate)
            if args.json:
                print(json.dumps(_turn_json(n, args.turns, turn, client, saved), ensure_ascii=False), flush=True)
            else:
                _print_turn(n, args.turns, turn, saved)
            if n < args.turns and args.mode != "manual":
                # Like the firmware: wait for the reply to finish playing before listening again.
                await asyncio.sleep(client.playback_remaining_s() + 0.1)
    except DeviceClientError as exc:
        raise cli.CliError(str(exc)) from exc
    finally:
        await client.close()
        problems = {
            "audio before tts/start": client.audio_before_start,
            "audio after tts/stop": client.audio_after_stop,
            "decode-queue overflows": client.queue_full_drops,
            "Opus decode errors": client.decode_errors,
            "framing errors": client.framing_errors,
            "invalid JSON": client.invalid_json,
            "MCP protocol violations": client.mcp_protocol_violations,
        }
        for what, count in problems.items():
            if count:
                print(f"{PROG}: warning: {count} {what}", file=sys.stderr)
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.turns < 1:
        raise cli.CliError("--turns must be >= 1", cli.EXIT_USAGE)
    return asyncio.run(_run(args))


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, lambda: _main(cli.parse(_parser(), argv)))


if __name__ == "__main__":
    raise SystemExit(main())
