from __future__ import annotations

import pytest

from edge_node.engines.sentences import SentenceSplitter, clean_for_speech


def feed(text: str, step: int = 3, **kwargs: int) -> tuple[list[str], list[str]]:
    """Stream ``text`` in small deltas; returns (chunks from push, chunks from flush)."""
    splitter = SentenceSplitter(**kwargs)
    pushed: list[str] = []
    for i in range(0, len(text), step):
        pushed += splitter.push(text[i : i + step])
    return pushed, splitter.flush()


def test_sentences_released_as_soon_as_certain() -> None:
    s = SentenceSplitter()
    assert s.push("Hello there") == []
    assert s.push(". How") == ["Hello there."]
    assert s.push(" are you?") == []  # "?" at the end: not yet certain
    assert s.push(" Fine") == ["How are you?"]
    assert s.flush() == ["Fine"]


@pytest.mark.parametrize("step", [1, 2, 5, 100])
def test_whole_reply_any_delta_size(step: int) -> None:
    text = "The weather is sunny today. It will be 23 degrees! Do you need an umbrella? No."
    pushed, rest = feed(text, step)
    assert pushed + rest == [
        "The weather is sunny today.",
        "It will be 23 degrees!",
        "Do you need an umbrella?",
        "No.",
    ]


def test_first_clause_cut_at_comma_only_once() -> None:
    text = "Sure, the capital of France is Paris, which is lovely, and old. Also, it is big, very big."
    pushed, rest = feed(text, 4)
    # "Sure," is too short; the first comma after 12 characters cuts; later commas do not.
    assert pushed + rest == [
        "Sure, the capital of France is Paris,",
        "which is lovely, and old.",
        "Also, it is big, very big.",
    ]


@pytest.mark.parametrize("step", [1, 3, 100])
def test_first_clause_without_a_comma_is_cut_before_a_joining_word(step: int) -> None:
    """Under a burst the first chunk is what every device waits for: "Rainbows form" can be spoken
    while the LLM is still writing the rest of a long first sentence."""
    text = "Rainbows form when sunlight is bent by raindrops and splits into colors. Then it fades."
    pushed, rest = feed(text, step)
    assert pushed + rest == [
        "Rainbows form",
        "when sunlight is bent by raindrops and splits into colors.",
        "Then it fades.",
    ]
    # Only the first chunk, only a whole word, and only once it is long enough.
    assert sum(feed("Cats sit in boxes so soon after. Also so.", step), []) == [
        "Cats sit in boxes",
        "so soon after.",
        "Also so.",
    ]
    assert sum(feed("Go and see it. Yes and no.", step), []) == ["Go and see it.", "Yes and no."]
    assert sum(feed("Birds sing sometimes. Okay.", step), []) == ["Birds sing sometimes.", "Okay."]


def test_first_clause_threshold_is_configurable() -> None:
    pushed, rest = feed("Okay, here we go. Fine.", 2, first_clause_min_chars=3)
    assert pushed + rest == ["Okay,", "here we go.", "Fine."]


def test_first_clause_colon_and_number_commas() -> None:
    pushed, rest = feed("It costs 1,000 dollars: quite a lot. Yes.", 1)
    assert pushed + rest == ["It costs 1,000 dollars:", "quite a lot.", "Yes."]


def test_decimals_and_abbreviations_are_not_ends() -> None:
    text = "Python 3.5 is old. Dr. Smith met Mr. J. K. Rowling at 10.30 today. Version 2.0 ships."
    pushed, rest = feed(text, 1)
    assert pushed + rest == [
        "Python 3.5 is old.",
        "Dr. Smith met Mr. J. K. Rowling at 10.30 today.",
        "Version 2.0 ships.",
    ]


def test_number_at_end_waits_for_next_char() -> None:
    s = SentenceSplitter()
    assert s.push("Pi is about 3.") == []
    assert s.push("14 and e is 2.7. Ok") == ["Pi is about 3.14", "and e is 2.7."]


def test_ellipsis_quotes_and_semicolon() -> None:
    pushed, rest = feed('He said "hi!" and left... Then; nothing.', 2)
    assert pushed + rest == ['He said "hi!"', "and left...", "Then;", "nothing."]


def test_cjk_sentences_cut_immediately() -> None:
    s = SentenceSplitter()
    assert s.push("今天天气很好。明天") == ["今天天气很好。"]
    assert s.push("会下雨吗？会的！") == ["明天会下雨吗？", "会的！"]
    assert s.flush() == []


def test_cjk_first_clause_and_closing_quote() -> None:
    text = "好的，我已经帮你打开了厨房的灯，还有什么需要吗？他说：“好。”然后"
    pushed, rest = feed(text, 100)
    assert pushed + rest == ["好的，我已经帮你打开了厨房的灯，", "还有什么需要吗？", "他说：“好。”", "然后"]
    # Streamed so that the closing quote arrives after the cut: it is dropped, not spoken alone.
    pushed, rest = feed(text, 2)
    assert pushed + rest == ["好的，我已经帮你打开了厨房的灯，", "还有什么需要吗？", "他说：“好。", "然后"]


def test_mixed_ascii_ender_before_cjk() -> None:
    pushed, rest = feed("Hello!你好", 1)
    assert pushed + rest == ["Hello!", "你好"]


def test_newlines_are_boundaries_and_list_markers_survive() -> None:
    text = "Here are options\n1. Tea\n2. Coffee\n"
    pushed, rest = feed(text, 3)
    assert pushed + rest == ["Here are options", "1. Tea", "2. Coffee"]


def test_long_chunk_cut_at_last_space() -> None:
    words = " ".join(f"word{i}" for i in range(60))
    pushed, rest = feed(words, 7, max_chars=50)
    chunks = pushed + rest
    assert all(len(c) <= 50 for c in chunks)
    assert " ".join(chunks) == words
    assert all(not c.endswith("word") for c in chunks)


def test_long_cjk_without_spaces_is_hard_cut() -> None:
    text = "字" * 130
    pushed, rest = feed(text, 10, max_chars=50)
    assert "".join(pushed + rest) == text
    assert all(len(c) <= 50 for c in pushed + rest)


def test_chunks_without_letters_are_dropped() -> None:
    pushed, rest = feed("Great! 😀😀. !!! Bye. 👍", 2)
    assert pushed + rest == ["Great!", "Bye."]


def test_flush_resets_for_next_reply() -> None:
    s = SentenceSplitter()
    assert s.push("This is the first reply, with a comma") == ["This is the first reply,"]
    assert s.flush() == ["with a comma"]
    # First-clause cutting applies again to the next reply.
    assert s.push("Another reply begins, and so on") == ["Another reply begins,"]
    assert s.flush() == ["and so on"]
    assert s.flush() == []


def test_whitespace_is_stripped() -> None:
    pushed, rest = feed("   Hello.    World.   ", 3)
    assert pushed + rest == ["Hello.", "World."]


def test_clean_for_speech() -> None:
    assert clean_for_speech("**Paris** is the *capital* 🇫🇷😀!") == "Paris is the capital !"
    assert clean_for_speech("# Title\n- item `one`\n- [two](http://x.y)") == "Title item one two"
    assert clean_for_speech("keep snake_case and 3.5 but __bold__") == "keep snake_case and 3.5 but bold"
    assert clean_for_speech("你好😊，世界") == "你好 ，世界"
