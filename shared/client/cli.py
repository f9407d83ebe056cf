"""``xiaozhi-device``: talk to a Xiaozhi server like a real device, from the command line.

    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --say "what time is it"
    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --wav question.wav --out reply.wav
    xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --text "tell me a joke"

Each turn: ``listen/start`` (mode), then the speech as Opus at real-time pace (manual mode:
``listen/stop`` after it; auto/realtime: trailing silence until the server's VAD answers), or a
``listen/detect`` text turn. Prints the transcript, the reply, the latencies and saves the decoded
reply audio as WAV at the rate the server hello announced. Exit code 0 when every turn completed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

from shared.client.device import DeviceClient, DeviceClientError, Turn
from shared.client.speech import load_wav_16k, save_wav, synthesize_16k

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xiaozhi-device",
        description="A firmware-like Xiaozhi device: one conversation over WebSocket + Opus.",
    )
    p.add_argument("--url", required=True, help="server WebSocket URL, e.g. ws://host:8000/xiaozhi/v1/")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--wav", type=Path, help="speak this WAV file (any rate / channels)")
    what.add_argument("--say", help="speak this text (synthesised with the bundled Piper voice)")
    what.add_argument("--text", help="send this text as a listen/detect turn (no audio)")
    p.add_argument("--mode", choices=("auto", "manual", "realtime"), default="auto", help="listening mode")
    p.add_argument("--device-id", default="d8:3b:da:00:00:01", help="Device-Id (MAC)")
    p.add_argument("--client-id", default=None, help="Client-Id (UUID; random if omitted)")
    p.add_argument("--token", default="", help="token for the Authorization header (Bearer is added)")
    p.add_argument("--protocol-version", type=int, choices=(1, 2, 3), default=1, help="binary framing version")
    p.add_argument("--frame-ms", type=int, choices=(20, 40, 60), default=60, help="uplink Opus frame duration")
    p.add_argument("--query", action="store_true", help="send device-id/client-id/token as query parameters")
    p.add_argument("--out", type=Path, default=Path("reply.wav"), help="where to save the reply audio")
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
            print(f"error: cannot read {args.wav}: {exc}", file=sys.stderr)
            return 1
    elif args.say is not None:
        speech = synthesize_16k(args.say)
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    params = client.server_audio_params or {}
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
            except TimeoutError:
                print(f"error: turn {n}: no tts/stop within {args.timeout:g} s", file=sys.stderr)
                return 1
            saved = None
            if turn.pcm.size:
                saved = _out_path(args.out, n, args.turns)
                save_wav(saved, turn.pcm, turn.sample_rate)
            _print_turn(n, args.turns, turn, saved)
            if n < args.turns and args.mode != "manual":
                # Like the firmware: wait for the reply to finish playing before listening again.
                await asyncio.sleep(client.playback_remaining_s() + 0.1)
    except DeviceClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
                print(f"warning: {count} {what}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.turns < 1:
        print("error: --turns must be >= 1", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
