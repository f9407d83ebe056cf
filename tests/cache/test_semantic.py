"""The semantic answer cache: the slot guard, the real embedding model on the banks, and the cache path.

The bank tests are the false-hit test the cache is judged by: every near miss (on/off, numbers,
negation, names, attributes, units, seasons) cached next to its twin is never answered from it, on
the banks the word lists were tuned on and on the held-out banks; paraphrases hit at least 70 %.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from bench import semantic_bank
from edge_node.cache.answers import AnswerCache
from edge_node.cache.build import Caches
from edge_node.cache.lru import LruCache
from edge_node.cache.policy import is_reusable_question
from edge_node.cache.semantic import SemanticIndex
from edge_node.cache.slots import question_slots
from edge_node.cloud_link.semantic_share import decode_entry, encode_entry, entry_key
from edge_node.config import load_config
from edge_node.engines.embedder import E5Embedder, shared_embedder
from edge_node.routing.intent import DeviceCapabilities
from edge_node.routing.router import Route, Router, TurnContext

CFG = load_config(environ={})
THRESHOLD = CFG.cache.semantic.threshold


@pytest.fixture(scope="module")
def embedder() -> E5Embedder:
    return shared_embedder(1)


# -- the slot guard alone (no model) ---------------------------------------------------------------
@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("heldout", [False, True])
def test_the_slot_guard_refuses_every_near_miss(language: str, heldout: bool) -> None:
    _, near = semantic_bank.load_banks(language, heldout)
    for item in near:
        a, b = (question_slots(q) for q in item["pair"])
        assert not a.agrees(b), f"{item['kind']}: {item['pair']} have the same slots {a}"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 15 times 4?", "What is 4 times 15?"),  # order of the numbers
        ("What is two minus three?", "What is three minus two?"),
        ("Who was the first president of France?", "Who was the second president of France?"),
        ("Which animals can fly?", "Which animals can't fly?"),
        ("How far is the moon?", "Why is the moon far?"),
        ("十五减三等于几？", "十五减四等于几？"),
        ("一加二等于几？", "二加二等于几？"),
        ("第一个登上月球的人是谁？", "第一个登上火星的人是谁？"),
    ],
)
def test_changing_a_number_order_negation_or_thing_changes_the_slots(a: str, b: str) -> None:
    assert not question_slots(a).agrees(question_slots(b))


def test_paraphrases_share_their_slots() -> None:
    for a, b in [
        ("How far is the moon?", "What's the distance to the moon?"),
        ("What is the largest ocean in the world?", "Which ocean is the biggest?"),
        ("How many legs does a spider have?", "How many legs do spiders have?"),
        ("月球离地球有多远？", "地球到月亮的距离是多少？"),
        ("长城有多长？", "万里长城有多长？"),
        # spoken openers change nothing
        ("Hey, what is the capital of France?", "What is the capital of France?"),
        ("Um, okay, how tall is Mount Everest?", "How tall is Mount Everest?"),
        ("你好，法国的首都是哪里？", "请问法国的首都是哪里？"),
    ]:
        assert question_slots(a).agrees(question_slots(b)), (a, b)


def test_every_bank_question_is_one_the_cache_would_look_up() -> None:
    """A paraphrase the policy refuses never reaches the index: the hit rate would mean nothing."""
    for language in ("en", "zh"):
        for heldout in (False, True):
            groups, _ = semantic_bank.load_banks(language, heldout)
            refused = [q for g in groups for q in g if not is_reusable_question(q)]
            assert not refused, refused


# -- the real model on the banks -------------------------------------------------------------------
@pytest.fixture(scope="module")
def bank_results(embedder: E5Embedder) -> dict[str, dict[str, object]]:
    return semantic_bank.evaluate(embedder, ["en", "zh"])


@pytest.mark.parametrize("bank", ["en", "zh", "en-heldout", "zh-heldout"])
def test_no_near_miss_is_ever_answered_from_its_twin(bank: str, bank_results: dict[str, dict[str, object]]) -> None:
    chosen = semantic_bank.at_threshold(bank_results[bank], THRESHOLD)
    assert chosen["false_hits"] == [], chosen["false_hits"]


@pytest.mark.parametrize("bank", ["en", "zh"])
def test_paraphrases_hit_at_least_70_percent(bank: str, bank_results: dict[str, dict[str, object]]) -> None:
    chosen = semantic_bank.at_threshold(bank_results[bank], THRESHOLD)
    assert chosen["paraphrase_hits"] >= 0.7 * chosen["paraphrases"], chosen


def test_similarity_alone_would_give_false_hits(bank_results: dict[str, dict[str, object]]) -> None:
    """Why the guard exists: at the chosen threshold, the nearest question by similarity alone
    answers near misses wrongly (on/off, numbers and negation score as high as paraphrases)."""
    row = next(r for r in bank_results["en"]["sweep"] if r["threshold"] == THRESHOLD)  # type: ignore[index]
    assert row["similarity_only"]["false_hits"] > 0


def test_embeddings_are_unit_vectors_and_rank_a_paraphrase_first(embedder: E5Embedder) -> None:
    q = embedder.embed("How far is the moon?")
    assert q.shape == (384,) and abs(float(np.linalg.norm(q)) - 1) < 1e-4
    para = embedder.embed("What is the distance to the moon?")
    other = embedder.embed("What do pandas eat?")
    assert float(q @ para) > float(q @ other)


# -- the answer cache with its semantic layer ------------------------------------------------------
@pytest.fixture
def answers(embedder: E5Embedder) -> Iterator[AnswerCache]:
    cache = AnswerCache(LruCache(1 << 20), None, ttl_s=3600, semantic=SemanticIndex(embedder, THRESHOLD))
    yield cache
    cache.close()


async def test_a_paraphrase_is_answered_from_the_cached_question(answers: AnswerCache) -> None:
    await answers.put("How far is the moon?", "About 384,000 kilometres.")
    await answers.put("How big is the moon?", "About a quarter of Earth's width.")
    found = await answers.find("What's the distance to the moon?")
    assert found is not None and found.text == "About 384,000 kilometres."
    assert found.via is not None and found.via.question == "How far is the moon?"
    assert found.via.similarity >= THRESHOLD
    assert await answers.find("How far is the sun?") is None  # near miss: another thing
    assert await answers.find("月球离地球有多远？", "zh") is None  # one index per language
    stats = answers.stats()["semantic"]
    assert stats["hit"] == 1 and stats["miss"] == 2 and stats["entries"] == 2
    assert stats["embed_ms_median"] is not None


async def test_an_expired_answer_is_not_served_through_a_paraphrase(embedder: E5Embedder) -> None:
    cache = AnswerCache(LruCache(1 << 20), None, ttl_s=0.2, semantic=SemanticIndex(embedder, THRESHOLD))
    try:
        await cache.put("How far is the moon?", "About 384,000 kilometres.")
        deadline = time.monotonic() + 5
        while await cache.find("How far is the moon?") is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await cache.find("What's the distance to the moon?") is None
    finally:
        cache.close()


async def test_the_index_replaces_its_oldest_entry_when_full(embedder: E5Embedder) -> None:
    index = SemanticIndex(embedder, THRESHOLD, max_entries=2)
    try:
        for q in ("How far is the moon?", "What do pandas eat?", "Why is the sky blue?"):
            await index.add(q, "en")
        assert len(index) == 2
        assert await index.lookup("What's the distance to the moon?", "en") is None
        match = await index.lookup("What food do pandas eat?", "en")
        assert match is not None and match.question == "What do pandas eat?"
    finally:
        index.close()


class _Chat:
    async def chat_stream(self, messages: list[dict[str, str]], max_tokens: int, **_: object) -> AsyncIterator[str]:
        yield "From the model."


async def test_the_router_answers_a_paraphrase_from_the_cache(answers: AnswerCache) -> None:
    await answers.put("What do pandas eat?", "Pandas eat bamboo.")
    router = Router(CFG.llm, CFG.intent, CFG.mcp, _Chat(), answers)  # type: ignore[arg-type]
    log = logging.LoggerAdapter(logging.getLogger("t"), {})
    result = await router.route(TurnContext("What food do pandas eat?", [], DeviceCapabilities(), _none, log))
    assert result.route == Route.CACHE and result.reason == "semantic cache hit"
    assert "".join([d async for d in result.text]) == "Pandas eat bamboo."
    result = await router.route(TurnContext("What do koalas eat?", [], DeviceCapabilities(), _none, log))
    assert result.route == Route.LOCAL_LLM


async def _none(_action: object) -> str:
    return ""


def test_the_switch_turns_it_off(tmp_path: Path) -> None:
    on = Caches.build(load_config(environ={"XIAOZHI__CACHE__DIR": str(tmp_path / "a")}).cache)
    env = {"XIAOZHI__CACHE__DIR": str(tmp_path / "b"), "XIAOZHI__CACHE__SEMANTIC__ENABLED": "0"}
    off = Caches.build(load_config(environ=env).cache)
    try:
        assert on.answers is not None and on.answers.semantic is not None
        assert off.answers is not None and off.answers.semantic is None
    finally:
        on.close()
        off.close()


# -- what the fleet shares -------------------------------------------------------------------------
def test_a_shared_entry_round_trips_and_bad_ones_are_refused(embedder: E5Embedder) -> None:
    vector = embedder.embed("How far is the moon?")
    question, language, back = decode_entry(encode_entry("How far is the moon?", "en", vector))
    assert (question, language) == ("How far is the moon?", "en") and float(back @ vector) > 0.999
    assert entry_key("How far is the moon?", "en") == entry_key("how far is the MOON", "en")
    assert entry_key("How far is the moon?", "en").startswith("sem.en.")
    for bad in (b"{", b"[]", b'{"q": "x", "l": "en", "v": "AAAA"}', encode_entry("q", "EN!", vector)):
        with pytest.raises(ValueError):
            decode_entry(bad)
