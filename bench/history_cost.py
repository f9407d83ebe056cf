"""What each earlier turn of conversation costs a local model: time to first token by turns of history.

    python -m bench.history_cost [--model PATH] [--turns 4] [--questions 8] [--threads 1]

The node keeps ``llm.history_turns`` earlier exchanges of a device in the prompt (its reply shortened
to ``llm.history_reply_chars``). Every one of them is prompt evaluation paid again on every turn: an
LLM worker serves many devices in turn, so llama.cpp's prefix cache (the previous prompt of the same
worker) rarely holds this device's conversation. This measures that cost as the node pays it: consecutive
prompts share only the system prompt (as prompts of different devices on one worker do; llama.cpp
reuses that prefix), on the configured thread count, with the node's system prompt. Printed: median time to first token
and prompt tokens per history length, and the cost of one more turn (the median of the steps).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from shared import cli

# A realistic earlier exchange: a short question and an answer cut to history_reply_chars (160).
_EXCHANGES = [
    ("What is the capital of France?", "The capital of France is Paris, known for the Eiffel Tower and the Louvre."),
    ("How far is it from London?", "Paris is about 340 kilometres from London, a little over two hours by train."),
    ("What is it like there in spring?", "Spring in Paris is mild, from about 10 to 20 degrees, with some rain."),
    ("What should I see first?", "Start with the Eiffel Tower, then walk along the Seine to the Louvre."),
    ("Is the metro easy to use?", "Yes, the metro is fast and simple: buy a ticket or a pass at any station."),
]
_QUESTIONS = [
    "And what about Germany?",
    "How many people live there?",
    "What language do they speak?",
    "Is it expensive?",
    "What food is it famous for?",
    "When is the best time to visit?",
    "How old is the city?",
    "Tell me one more thing about it.",
]


def measure(model_path: Path, turns: int, questions: int, threads: int, system_prompt: str) -> dict[str, object]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=2048, n_threads=threads, verbose=False)
    rows: list[dict[str, float]] = []
    for h in range(turns + 1):
        ttfts: list[float] = []
        prompt_tokens: list[int] = []
        for i in range(questions):
            history: list[dict[str, str]] = []
            for k in range(h):
                user, assistant = _EXCHANGES[(i + k) % len(_EXCHANGES)]
                history += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            messages = [{"role": "system", "content": system_prompt}, *history]
            messages.append({"role": "user", "content": _QUESTIONS[i % len(_QUESTIONS)]})
            started = time.perf_counter()
            stream = llm.create_chat_completion(messages=messages, max_tokens=1, stream=True, temperature=0.2)
            for _ in stream:
                break
            ttfts.append((time.perf_counter() - started) * 1000)
            prompt_tokens.append(int(llm.n_tokens))
        rows.append(
            {
                "history_turns": h,
                "median_first_token_ms": round(statistics.median(ttfts), 1),
                "median_prompt_tokens": statistics.median(prompt_tokens),
            }
        )
    steps = [b["median_first_token_ms"] - a["median_first_token_ms"] for a, b in zip(rows, rows[1:], strict=False)]
    return {
        "model": model_path.name,
        "threads": threads,
        "rows": rows,
        "ms_per_extra_turn": round(statistics.median(steps), 1) if steps else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.history_cost", __doc__)
    parser.add_argument("--model", default="", help="a GGUF (default: the node's configured English model)")
    parser.add_argument("--turns", type=int, default=4, help="history lengths 0..N")
    parser.add_argument("--questions", type=int, default=8, help="prompts per history length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the figures as JSON")
    args = cli.parse(parser, argv)

    def run() -> int:
        from edge_node.config import load_config
        from shared import models

        cfg = load_config()
        path = Path(args.model or cfg.llm.model_path or models.smollm2_gguf())
        result = measure(path, args.turns, args.questions, args.threads, cfg.llm.system_prompt)
        for row in result["rows"]:  # type: ignore[attr-defined]
            print(
                f"{result['model']}: {row['history_turns']} earlier turns: first token "
                f"{row['median_first_token_ms']} ms, {row['median_prompt_tokens']} prompt tokens"
            )
        print(f"{result['model']}: {result['ms_per_extra_turn']} ms per extra turn of history")
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0

    return cli.run("history_cost", run)


if __name__ == "__main__":
    sys.exit(main())
