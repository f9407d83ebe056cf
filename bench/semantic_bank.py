"""The semantic cache on its banks: paraphrase hit rate, false hits on near misses, embedding cost.

``bench/banks/paraphrases-<lang>.yaml`` holds groups of questions that mean the same; the first of a
group is cached, the rest are asked. ``near-misses-<lang>.yaml`` holds pairs that read alike but need
another answer; the first is cached, the second asked. All of them are cached in one index per
language (as on a node that has seen them all), so a paraphrase that lands on the wrong group's
question or a near miss that lands on anything is a false hit.

For each asked question the nearest cached questions are recorded once; a threshold sweep then says
what each threshold would give, with the slot guard and without it (similarity alone), which is how
``cache.semantic.threshold`` was chosen. Run: ``xiaozhi-eval --semantic``.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import yaml

from edge_node.cache.policy import is_reusable_question
from edge_node.cache.semantic import SemanticIndex
from edge_node.engines.embedder import Embedder

BANKS = Path(__file__).resolve().parent / "banks"
THRESHOLDS = (0.85, 0.88, 0.90, 0.92, 0.94, 0.96)


def load_banks(language: str, heldout: bool = False) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """(paraphrase groups, near-miss pairs): the banks the word lists were tuned on, or the held-out ones."""
    if heldout:
        bank = yaml.safe_load((BANKS / f"heldout-{language}.yaml").read_text(encoding="utf-8"))
        return bank["paraphrases"], bank["near_misses"]
    groups = yaml.safe_load((BANKS / f"paraphrases-{language}.yaml").read_text(encoding="utf-8"))
    near = yaml.safe_load((BANKS / f"near-misses-{language}.yaml").read_text(encoding="utf-8"))
    return groups, near


def _outcome(cands: list[tuple[str, float, bool]], threshold: float, guard: bool) -> tuple[str, float] | None:
    """What a lookup at ``threshold`` returns: (cached question, similarity) or None."""
    for question, similarity, agrees in cands:
        if similarity < threshold:
            return None
        if agrees or not guard:
            return question, similarity
    return None


async def _measure(embedder: Embedder, language: str, heldout: bool) -> dict[str, Any]:
    groups, near = load_banks(language, heldout)
    index = SemanticIndex(embedder, threshold=0.0)
    try:
        for question in [g[0] for g in groups] + [n["pair"][0] for n in near]:
            await index.add(question, language)
        index.embed_ms.clear()
        asked: list[tuple[str, str | None, str]] = []  # (question, the cached one it should find, kind)
        for group in groups:
            asked += [(q, group[0], "paraphrase") for q in group[1:]]
        asked += [(n["pair"][1], None, n["kind"]) for n in near]
        cands = [await index.run(lambda q=q: index.candidates(q, language)) for q, _, _ in asked]
        embed_ms = statistics.median(index.embed_ms)
    finally:
        index.close()
    not_reusable = [q for q, _, _ in asked if not is_reusable_question(q)]
    sweep = []
    for threshold in THRESHOLDS:
        row: dict[str, Any] = {"threshold": threshold}
        for guard in (True, False):
            hits = false = 0
            for (_, expected, _), cand in zip(asked, cands, strict=True):
                found = _outcome(cand, threshold, guard)
                if found is None:
                    continue
                if expected is not None and found[0] == expected:
                    hits += 1
                else:
                    false += 1
            key = "guarded" if guard else "similarity_only"
            row[key] = {"paraphrase_hits": hits, "false_hits": false}
        sweep.append(row)
    paraphrases = sum(1 for _, expected, _ in asked if expected is not None)
    return {
        "language": language,
        "bank": "held out" if heldout else "tuning",
        "paraphrases": paraphrases,
        "near_misses": len(asked) - paraphrases,
        "not_reusable": not_reusable,
        "embed_ms_median": round(embed_ms, 1),
        "sweep": sweep,
        "_asked": asked,
        "_cands": cands,
    }


def evaluate(embedder: Embedder, languages: list[str]) -> dict[str, Any]:
    """Per "<language>" (the tuning banks) and "<language>-heldout"."""
    out = {}
    for language in languages:
        out[language] = asyncio.run(_measure(embedder, language, heldout=False))
        out[f"{language}-heldout"] = asyncio.run(_measure(embedder, language, heldout=True))
    return out


def at_threshold(result: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Hits and false hits (with the guard) at one threshold, with the questions that were false hits."""
    hits, false = 0, []
    for (question, expected, kind), cand in zip(result["_asked"], result["_cands"], strict=True):
        found = _outcome(cand, threshold, guard=True)
        if found is None:
            continue
        if expected is not None and found[0] == expected:
            hits += 1
        else:
            false.append({"asked": question, "answered_as": found[0], "kind": kind, "similarity": round(found[1], 3)})
    return {"paraphrase_hits": hits, "paraphrases": result["paraphrases"], "false_hits": false}


def print_report(results: dict[str, Any], threshold: float) -> None:
    for r in results.values():
        chosen = at_threshold(r, threshold)
        rate = 100 * chosen["paraphrase_hits"] / r["paraphrases"]
        print(
            f"semantic cache, {r['language']} ({r['bank']} bank): "
            f"{chosen['paraphrase_hits']}/{r['paraphrases']} paraphrases hit "
            f"({rate:.1f} %), {len(chosen['false_hits'])} false hits on {r['near_misses']} near misses "
            f"at threshold {threshold}; embedding median {r['embed_ms_median']} ms"
        )
        for false in chosen["false_hits"]:
            print(f"  FALSE HIT ({false['kind']}, {false['similarity']}): ", end="")
            print(f"{false['asked']!r} -> {false['answered_as']!r}")
        if r["not_reusable"]:
            print(f"  not reusable by the cache policy (never looked up on a node): {r['not_reusable']}")
        print("  threshold | guarded: hits / false | similarity only: hits / false")
        for row in r["sweep"]:
            g, s = row["guarded"], row["similarity_only"]
            print(
                f"  {row['threshold']:.2f}      | {g['paraphrase_hits']:3d} / {g['false_hits']:<3d}"
                f"          | {s['paraphrase_hits']:3d} / {s['false_hits']}"
            )


def public(results: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The results without the per-question working (for --out)."""
    return {
        language: {k: v for k, v in r.items() if not k.startswith("_")} | {"at_threshold": at_threshold(r, threshold)}
        for language, r in results.items()
    }
