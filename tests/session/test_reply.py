"""A reply's lifecycle, in process: what the device is sent, in which order, and what the reply leaves
behind (conversation, answer cache, tool calls), for the ways a turn can go.

The black-box tests against a spawned edge (tests/edge, tests/faults) pin the same behaviour end to
end; these drive one Reply through a recording port on timing engines in well under a second each,
so a change to the reply, the router or the output shows here first.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from edge_node.routing.intent import DeviceAction, DeviceCapabilities
from edge_node.routing.router import APOLOGY, CUT_OFF, Route
from edge_node.session.reply import Reply, ReplyState, TurnInput
from tests.session.harness import LOCAL_REPLY, FakeCloud, RecordingPort, node, profile, run_turn, text_turn

QUESTION = "What is a cat?"  # reusable: a complete model answer goes to the answer cache
SPOKEN = ["stt", "tts:start", "llm", "tts:sentence_start", "audio", "tts:sentence_start", "audio", "tts:stop"]
CLOUD_FIRST = "llm: {default: cloud}\n"


async def _until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_a_model_answer_is_spoken_in_order_remembered_and_stored() -> None:
    with node() as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.DONE and reply.route == Route.LOCAL_LLM
        assert port.order() == SPOKEN
        assert " ".join(port.sentences()) == LOCAL_REPLY
        assert port.sent[0][1] == {"session_id": "S1", "type": "stt", "text": QUESTION}
        assert port.remembered == [(QUESTION, LOCAL_REPLY)]
        assert services.router.answer_cache is not None and services.router.answer_cache.contains(QUESTION)
        assert port.said_nothing is False and reply.first_audio_at is not None


async def test_a_voice_turn_is_transcribed_first() -> None:
    with node(profile(transcript="Tell me about cats.")) as services:
        port = RecordingPort()
        await run_turn(services, port, TurnInput(pcm=np.zeros(16000, dtype=np.int16)))
        assert port.sent[0][1]["text"] == "Tell me about cats." and port.order() == SPOKEN


async def test_a_device_command_calls_the_device_tool_and_is_not_remembered() -> None:
    caps = DeviceCapabilities(tools={"self.audio_speaker.set_volume": {}}, state={"volume": 50})
    with node() as services:
        port = RecordingPort(caps)
        reply = await run_turn(services, port, text_turn("Set the volume to 30."))
        assert reply.route == Route.INTENT
        assert port.actions == [DeviceAction("mcp", "self.audio_speaker.set_volume", {"volume": 30})]
        assert port.sentences() == ["Okay, volume set to 30."]
        assert port.remembered == [] and not services.router.answer_cache.contains("Set the volume to 30.")  # type: ignore[union-attr]


async def test_a_device_that_fails_the_command_is_answered_with_its_apology() -> None:
    caps = DeviceCapabilities(tools={"self.audio_speaker.set_volume": {}}, state={"volume": 50})
    with node() as services:
        port = RecordingPort(caps)
        port.action_error = TimeoutError("no tools/call result")
        reply = await run_turn(services, port, text_turn("Set the volume to 30."))
        assert reply.route == Route.INTENT and reply.state == ReplyState.DONE
        assert port.sentences() == ["Sorry, the device did not respond."]


async def test_a_device_that_hangs_up_at_tts_stop_does_not_cost_the_answers_bookkeeping() -> None:
    """Once tts/stop is out the device has heard everything: a disconnect then must not cancel the
    reply's remembering and storing (a test client that closed at once left the answer uncached)."""
    with node() as services:
        port = RecordingPort()
        reply = Reply(port, services, port.gen, text_turn(QUESTION))
        interrupted: list[bool] = []
        port.on_tts_stop = lambda: interrupted.append(reply.interrupt("disconnect"))
        reply.start()
        await asyncio.wait_for(port.finished.wait(), 10)
        assert interrupted == [False] and reply.state == ReplyState.DONE
        assert port.remembered == [(QUESTION, LOCAL_REPLY)]
        assert services.router.answer_cache is not None and services.router.answer_cache.contains(QUESTION)


async def test_barge_in_silences_the_reply_and_frees_the_model() -> None:
    slow = profile(reply=" ".join(["word"] * 200) + ".", per_token_s=0.02)  # ~4 s of generation
    with node(slow) as services:
        port = RecordingPort()
        reply = Reply(port, services, port.gen, text_turn("Tell me a long story about a dragon."))
        reply.start()
        await _until(lambda: port.audio_packets() > 0)
        interrupted_at = time.monotonic()
        delivered = len(port.sent)
        port.gen += 1  # what the session does on a barge-in: a new generation, then the cancel
        assert reply.interrupt("voice")
        await asyncio.wait_for(port.finished.wait(), 2)
        assert reply.state == ReplyState.INTERRUPTED
        assert len(port.sent) == delivered, "stale text or audio reached the device after the barge-in"
        assert "tts:stop" not in port.order()  # the session, not the reply, sends the stop of a barge-in
        # The next turn gets the LLM worker at once: the interrupted stream stopped generating.
        following = RecordingPort()
        await run_turn(services, following, text_turn(QUESTION))
        assert following.order()[-1] == "tts:stop" and time.monotonic() - interrupted_at < 3.0


async def test_a_turn_that_cannot_start_in_time_hears_busy() -> None:
    slow = profile(reply=" ".join(["word"] * 200) + ".", per_token_s=0.02)
    with node(slow, queues={"burst_wait_s": 0.3}) as services:
        holder = RecordingPort()
        long = Reply(holder, services, holder.gen, text_turn("Tell me a long story about a dragon."))
        long.start()
        await _until(lambda: holder.audio_packets() > 0)  # the only LLM worker is taken for seconds
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.FAILED
        assert port.sentences() == [services.queues.busy_message]
        assert port.order() == ["stt", "tts:start", "llm", "tts:sentence_start", "audio", "tts:stop"]
        assert port.remembered == []
        holder.gen += 1
        long.interrupt("test over")
        await asyncio.wait_for(holder.finished.wait(), 2)


async def test_a_burst_within_the_bound_is_queued_answered_and_hears_a_filler_meanwhile() -> None:
    """The only LLM worker is taken for about a second: a turn behind it waits (within burst_wait_s)
    instead of hearing "busy", says "One moment." once it has waited filler_after_s, then speaks the
    answer on the same tts start/stop. The answer's first audio is measured after the filler's."""
    answer = " ".join([" ".join(["word"] * 8) + "."] * 6)
    slow = profile(reply=answer, per_token_s=0.02)  # ~1 s of generation, the first sentence in 0.2 s
    with node(slow, queues={"burst_wait_s": 5.0, "filler_after_s": 0.3}) as services:
        holder = RecordingPort()
        long = Reply(holder, services, holder.gen, text_turn("Tell me a long story about a dragon."))
        long.start()
        await _until(lambda: holder.audio_packets() > 0)
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.DONE and reply.route == Route.LOCAL_LLM
        assert port.sentences()[0] == "One moment." and " ".join(port.sentences()[1:]) == answer
        order = port.order()
        assert order[:5] == ["stt", "tts:start", "llm", "tts:sentence_start", "audio"]
        assert order.count("tts:start") == 1 and order.count("tts:stop") == 1 and order[-1] == "tts:stop"
        assert reply.out.filler_at is not None and reply.first_audio_at is not None
        assert reply.first_audio_at > reply.out.filler_at
        await asyncio.wait_for(holder.finished.wait(), 10)


async def test_a_slow_answer_with_nothing_queued_hears_no_filler() -> None:
    """A turn that is slow on an idle node (a long first sentence) is not in a queue: a filler would
    only push its answer back by its own length."""
    slow = profile(reply=" ".join(["word"] * 30) + ".", per_token_s=0.03)  # ~0.9 s to the first sentence
    with node(slow, queues={"filler_after_s": 0.2}) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.DONE and reply.first_audio_at is not None
        assert reply.first_audio_at - reply.turn.ended_at > 0.2  # it was slow
        assert "One moment." not in port.sentences() and reply.out.filler_at is None


async def test_a_quick_answer_hears_no_filler() -> None:
    with node(queues={"filler_after_s": 0.5}) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.DONE and "One moment." not in port.sentences()
        assert port.order() == SPOKEN and reply.out.filler_at is None


async def test_a_device_over_its_turn_rate_hears_the_slow_down_phrase() -> None:
    with node() as services:
        port = RecordingPort()
        turn = text_turn(QUESTION)
        turn.rate_limited = True
        reply = await run_turn(services, port, turn)
        assert reply.state == ReplyState.DONE
        assert port.order() == ["tts:start", "llm", "tts:sentence_start", "audio", "tts:stop"]  # nothing transcribed
        assert port.sentences() == [services.canned.slow_down.text]  # type: ignore[union-attr]


async def test_the_cloud_failing_mid_answer_ends_with_the_cut_off_apology() -> None:
    cloud = FakeCloud("One two three four five six.", fail_after=3)
    with node(cloud=cloud, routing=CLOUD_FIRST) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.route == Route.CLOUD and reply.result is not None and "cut_off" in reply.result.fell_back
        spoken = " ".join(port.sentences())
        assert spoken.startswith("One two three") and spoken.endswith(CUT_OFF)
        assert port.order()[-1] == "tts:stop" and port.audio_packets() > 0
        assert not services.router.answer_cache.contains(QUESTION)  # type: ignore[union-attr]


async def test_the_cloud_failing_before_its_first_word_hands_the_turn_to_the_local_model() -> None:
    cloud = FakeCloud(fail_after=0)
    with node(cloud=cloud, routing=CLOUD_FIRST) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert cloud.calls == 1 and reply.route == Route.LOCAL_LLM
        assert reply.result is not None and reply.result.fell_back == ["cloud->local_llm"]
        assert " ".join(port.sentences()) == LOCAL_REPLY and port.order() == SPOKEN
        assert not services.router.answer_cache.contains(QUESTION)  # type: ignore[union-attr]  # a fallback's answer


async def test_every_route_failing_ends_in_the_spoken_apology() -> None:
    routing = CLOUD_FIRST + "fallback: {cloud: [apology]}\n"
    with node(cloud=FakeCloud(fail_after=0), routing=routing) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.route == Route.APOLOGY and port.sentences() == [APOLOGY]
        assert port.order()[-1] == "tts:stop"


async def test_no_words_means_nothing_is_said_and_the_session_listens_again() -> None:
    with node() as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn("   "))
        assert reply.state == ReplyState.DONE and port.sent == [] and port.said_nothing is True


CAPPED_REPLY = (
    "The first sentence is spoken in full. The second sentence fits in the cap as well. "
    "The third sentence would run past the cap. The fourth is never reached."
)
RAMBLING_TAIL = " And then it goes on." * 40  # 200 more tokens: 4 s of generation at 20 ms a token


async def test_a_long_answer_stops_at_the_spoken_length_cap_on_a_sentence_boundary() -> None:
    """At 100 characters a second of speech, the first two sentences take 0.81 s; the third would end at
    1.2 s, past the 1 s cap, so the reply ends after the second, and the model stops generating (the turn
    ends long before the 4 s the whole answer would take)."""
    from edge_node import metrics

    capped = metrics.REPLIES_CAPPED._value.get()
    rambling = profile(reply=CAPPED_REPLY + RAMBLING_TAIL, chars_per_s=100.0, per_token_s=0.02)
    with node(rambling, tts={"max_reply_s": 1.0}) as services:
        port = RecordingPort()
        started = time.monotonic()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.state == ReplyState.DONE
        first_two = ["The first sentence is spoken in full.", "The second sentence fits in the cap as well."]
        assert port.sentences() == first_two
        assert port.order()[-1] == "tts:stop"
        assert metrics.REPLIES_CAPPED._value.get() == capped + 1
        assert time.monotonic() - started < 3.5, "the model went on generating the rest of the answer"


async def test_the_cap_holds_for_a_remote_route_too() -> None:
    """The cloud's 43 s reply of the issue: a remote answer is held to the same spoken-length cap."""
    cloud = FakeCloud(reply=CAPPED_REPLY + RAMBLING_TAIL)
    with node(profile(chars_per_s=100.0), cloud=cloud, routing=CLOUD_FIRST, tts={"max_reply_s": 1.0}) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn(QUESTION))
        assert reply.route == Route.CLOUD and cloud.calls == 1
        assert port.sentences() == [
            "The first sentence is spoken in full.",
            "The second sentence fits in the cap as well.",
        ]


async def test_the_first_sentence_is_spoken_whole_even_past_the_cap() -> None:
    long_first = "This single opening sentence runs well past the whole cap on its own. Then a second one."
    with node(profile(reply=long_first, chars_per_s=100.0), tts={"max_reply_s": 0.3}) as services:
        port = RecordingPort()
        await run_turn(services, port, text_turn(QUESTION))
        assert port.sentences() == ["This single opening sentence runs well past the whole cap on its own."]


async def test_no_cap_speaks_everything() -> None:
    with node(profile(reply=CAPPED_REPLY, chars_per_s=100.0), tts={"max_reply_s": 0}) as services:
        port = RecordingPort()
        await run_turn(services, port, text_turn(QUESTION))
        assert " ".join(port.sentences()) == CAPPED_REPLY


async def test_a_timer_that_comes_due_is_spoken_as_a_reply_of_its_own() -> None:
    """What a set_timer tool leaves behind: a reply with no user turn, spoken with the usual tts start /
    stop, not transcribed, not routed, not remembered."""
    with node() as services:
        port = RecordingPort()
        reply = await run_turn(services, port, TurnInput(say="Reminder: take the tea out", source="timer"))
        assert reply.state == ReplyState.DONE and reply.route == Route.TOOL
        assert port.order()[0] == "tts:start" and port.order()[-1] == "tts:stop" and "stt" not in port.order()
        assert " ".join(port.sentences()) == "Reminder: take the tea out"
        assert port.remembered == []
