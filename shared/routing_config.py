"""The fallback routing config (``routing.yaml``): which route answers a turn, and what happens when it fails.

One schema, used by the edge's router, the KV watcher that hot-reloads it, ``xiaozhi-cloud routing``
and the admin console. A config that does not validate is refused as a whole with every problem
named by its key path; the edge keeps the config it had. Example (every key optional)::

    version: 1
    order: [intent, cache, llm]            # steps; "llm" picks local_llm, cloud or provider by the rules below
    llm:
      default: local_llm                   # when no rule matches
      escalation: [provider, cloud]        # what "escalate" means: the first of these the node has
      rules:                               # first match wins
        - name: not-english
          when: {language: [zh, ja, ko]}
          route: escalate
        - name: open-question
          when: {complexity_at_least: 0.6}
          route: cloud
        - name: fresh-facts
          when: {keywords: [weather, news, stock]}
          route: cloud
      overflow:                            # the edge's LLM queue is deep: don't queue, escalate
        llm_queue_depth_at_least: 2
        route: escalate
    complexity:                            # the 0..1 score that complexity_at_least tests
      long_words: 16
      question_words: {why: 0.3, how: 0.2, explain: 0.4}
      keywords: {story: 0.3, compare: 0.3}
    routes:
      cloud: {accept_timeout_s: 1.0, first_token_timeout_s: 4.0, chunk_timeout_s: 3.0, retries: 1,
              max_tokens: 256, breaker: {failures: 3, open_s: 30}}
      provider: {first_token_timeout_s: 4.0, chunk_timeout_s: 3.0, retries: 1, max_tokens: 256}
      local_llm: {first_token_timeout_s: 20.0}
    fallback:                              # tried in order when a route fails before its first word
      cloud: [local_llm, apology]
      provider: [cloud, local_llm, apology]
      local_llm: [apology]
    asr:
      cloud: low_confidence                # never | low_confidence | always
      min_avg_logprob: -1.0
    prompts:                               # persona / style per site or device, per language
      sites: {shop-12: {en: "You are Mia, the shop's assistant. Answer in one or two short sentences."}}
      devices: {"aa:bb:cc:dd:ee:ff": {zh: "你是小朋友的学习助手。用一两句简单的话回答。"}}
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "RoutingConfigError",
    "RoutingPolicy",
    "default_policy",
    "load_routing_file",
    "parse_routing",
]

# Who answers: the edge's own model, the cloud tier over NATS, or an OpenAI-compatible provider the
# edge asks directly (edge config ``provider``).
Route = Literal["local_llm", "cloud", "provider"]
# What a rule may choose: a route, or "escalate": the first of ``llm.escalation`` this node has.
Choice = Literal["local_llm", "cloud", "provider", "escalate"]
Remote = Literal["cloud", "provider"]
Step = Literal["intent", "cache", "llm"]
Fallback = Literal["local_llm", "cloud", "provider", "apology"]


class RoutingConfigError(ValueError):
    """The routing config cannot be used; the message lists every problem by key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """All given tests must hold (an empty condition always matches)."""

    language: list[str] | None = None  # the turn's language is one of these (ISO 639-1)
    complexity_at_least: float | None = Field(None, ge=0, le=1)
    keywords: list[str] | None = None  # any of these words occurs in the utterance
    words_at_least: int | None = Field(None, ge=1)
    llm_queue_depth_at_least: int | None = Field(None, ge=0)
    # The kind of question (edge_node/routing/kinds.py: fact, explain, advice, device, arithmetic, creative).
    kinds: list[str] | None = None
    # The local model's measured score on this kind of question in this language (``local_scores``) is
    # below this: the better model answers what the small one measurably gets wrong.
    local_score_below: float | None = Field(None, ge=0, le=1)


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=64)
    when: Condition = Field(default_factory=Condition)
    route: Choice


class Overflow(_Strict):
    llm_queue_depth_at_least: int = Field(2, ge=1)
    route: Choice = "escalate"


def _default_rules() -> list[Rule]:
    # Measured, not guessed: a turn escalates when the local model got its kind of question right less
    # than 90 % of the time on the question banks (``local_scores``); 90 % is the share the better model
    # reaches on them (docs/performance.md, "Answers by model"). A node without a cloud link or a
    # provider answers those turns locally.
    return [Rule(name="weak-local-model", when=Condition(local_score_below=0.9), route="escalate")]


def _default_local_scores() -> dict[str, dict[str, float]]:
    """The bundled local models' share correct per language and kind of question, measured with
    ``xiaozhi-eval --quality`` (docs/performance.md, "Answers by model"); an operator who runs another
    local model measures it the same way and puts the printed block in routing.yaml."""
    return {
        "en": dict(_MEASURED_EN),
        "zh": dict(_MEASURED_ZH),
    }


# The bundled local models' share of correct answers per kind (rule answers left out), measured on
# bench/banks/ with `xiaozhi-eval --quality` on 2026-12-04 (docs/performance.md, "Answers by model"):
# English SmolLM2-135M-Instruct, Chinese Qwen2.5-Coder-0.5B-Instruct, temperature 0.2.
_MEASURED_EN: dict[str, float] = {"advice": 0.44, "arithmetic": 0.33, "explain": 0.7, "fact": 0.87}
_MEASURED_ZH: dict[str, float] = {"advice": 1.0, "explain": 0.38, "fact": 0.78}


class LlmChoice(_Strict):
    default: Choice = "local_llm"
    # What "escalate" means on a node: the first of these it has (a provider configured, a cloud
    # link); a node with neither answers locally.
    escalation: list[Remote] = Field(default_factory=lambda: ["provider", "cloud"], min_length=1)
    # The built-in rules escalate what the bundled English models do badly; an edge without a
    # cloud link answers those turns locally.
    rules: list[Rule] = Field(default_factory=_default_rules)
    overflow: Overflow | None = Field(default_factory=Overflow)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        # Counter, not names.count() per name: found by fuzzing, 20 000 aliased rules took seconds.
        dupes = sorted(n for n, k in Counter(r.name for r in rules).items() if k > 1)
        if dupes:
            raise ValueError(f"rule names must be unique: {dupes}")
        return rules


class Complexity(_Strict):
    long_words: int = Field(16, ge=1)  # a question of this many words scores 0.5 on length alone
    question_words: dict[str, float] = Field(
        default_factory=lambda: {
            "why": 0.3,
            "how": 0.2,
            "explain": 0.4,
            "describe": 0.3,
            "compare": 0.4,
            "difference": 0.3,
            "what if": 0.3,
        }
    )
    keywords: dict[str, float] = Field(
        default_factory=lambda: {"story": 0.3, "essay": 0.5, "plan": 0.3, "recipe": 0.3, "history": 0.2}
    )

    @field_validator("question_words", "keywords")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for word, weight in value.items():
            if not word.strip():
                raise ValueError("an empty word cannot have a weight")
            if not 0 <= weight <= 1:
                raise ValueError(f"weight of {word!r} must be within 0..1, got {weight}")
        return value


class Breaker(_Strict):
    failures: int = Field(3, ge=1)  # consecutive failures that open the circuit
    open_s: float = Field(30.0, gt=0)  # then the route is skipped this long, then one trial turn


class RouteLimits(_Strict):
    accept_timeout_s: float = Field(1.0, gt=0)
    first_token_timeout_s: float = Field(4.0, gt=0)
    chunk_timeout_s: float = Field(3.0, gt=0)
    retries: int = Field(1, ge=0, le=5)  # more tries when a worker refused or did not accept in time
    max_tokens: int | None = Field(None, ge=1)
    breaker: Breaker = Field(default_factory=Breaker)


def _default_routes() -> dict[str, RouteLimits]:
    return {
        "cloud": RouteLimits(max_tokens=160),
        "provider": RouteLimits(max_tokens=160),
        "local_llm": RouteLimits(first_token_timeout_s=20.0),
    }


class AsrEscalation(_Strict):
    cloud: Literal["never", "low_confidence", "always"] = "low_confidence"
    min_avg_logprob: float = Field(-1.0, le=0)


class Prompts(_Strict):
    """System prompts (the persona and the spoken style) for some sites or devices, per language: a
    device's own wins over its site's, which wins over the node's built-in prompt for the language.
    Set from the console like the rest of this config, applied by every edge on its next turn."""

    sites: dict[str, dict[str, str]] = Field(default_factory=dict)  # site -> language -> prompt
    devices: dict[str, dict[str, str]] = Field(default_factory=dict)  # device id -> language -> prompt

    @field_validator("sites", "devices")
    @classmethod
    def _short(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for owner, prompts in value.items():
            for language, prompt in prompts.items():
                if not prompt.strip():
                    raise ValueError(f"{owner}.{language}: an empty prompt (leave the language out instead)")
                # Every character is prompt evaluation on every turn of that device (docs/models.md §10).
                if len(prompt) > MAX_PROMPT_CHARS:
                    raise ValueError(f"{owner}.{language}: {len(prompt)} characters, more than {MAX_PROMPT_CHARS}")
        return value


MAX_PROMPT_CHARS = 1000


class RoutingPolicy(_Strict):
    version: Literal[1] = 1
    order: list[Step] = Field(default_factory=lambda: ["intent", "cache", "llm"])
    llm: LlmChoice = Field(default_factory=LlmChoice)
    complexity: Complexity = Field(default_factory=Complexity)
    routes: dict[Route, RouteLimits] = Field(default_factory=_default_routes)
    fallback: dict[Route, list[Fallback]] = Field(
        default_factory=lambda: {
            "cloud": ["local_llm", "apology"],
            "provider": ["local_llm", "apology"],
            "local_llm": ["apology"],
        }
    )
    asr: AsrEscalation = Field(default_factory=AsrEscalation)
    # language -> kind -> the local model's measured share of correct answers (0..1). A kind missing
    # here has no score: ``local_score_below`` does not hold for it.
    local_scores: dict[str, dict[str, float]] = Field(default_factory=_default_local_scores)
    prompts: Prompts = Field(default_factory=Prompts)

    @field_validator("local_scores")
    @classmethod
    def _scores(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for language, kinds in value.items():
            for kind, score in kinds.items():
                if not 0 <= score <= 1:
                    raise ValueError(f"{language}.{kind} must be within 0..1, got {score}")
        return value

    def local_score(self, language: str, kind: str) -> float | None:
        return self.local_scores.get(language, {}).get(kind)

    def prompt_for(self, device_id: str, site: str, language: str) -> str | None:
        """The device's own system prompt for the language, else its site's, else None (the node's)."""
        own = self.prompts.devices.get(device_id, {}).get(language)
        return own if own is not None else self.prompts.sites.get(site, {}).get(language)

    @field_validator("order")
    @classmethod
    def _order(cls, order: list[str]) -> list[str]:
        if len(set(order)) != len(order):
            raise ValueError("a step may appear only once")
        if "llm" not in order:
            raise ValueError("must include llm (a turn no rule or cache answers needs a model)")
        return order

    @model_validator(mode="after")
    def _chains(self) -> RoutingPolicy:
        for route, chain in self.fallback.items():
            if route in chain:
                raise ValueError(f"fallback.{route} must not contain {route} itself")
            if chain and chain[-1] != "apology" and "apology" in chain:
                raise ValueError(f"fallback.{route}: apology must be last")
        return self

    def limits(self, route: str) -> RouteLimits:
        return self.routes.get(route) or RouteLimits()  # type: ignore[call-overload]

    def chain(self, route: str) -> list[str]:
        """The route, then what to try when it fails, ending in the spoken apology."""
        rest = list(self.fallback.get(route, []))  # type: ignore[call-overload]
        if "apology" not in rest:
            rest.append("apology")
        return [route, *rest]


def default_policy() -> RoutingPolicy:
    return RoutingPolicy()


# A real routing config is a few hundred values in a few KB. Both limits bound the work a config
# from the KV bucket or the console can cost an edge (found by fuzzing): pure-Python PyYAML parses
# about 250 KB/s, and YAML aliases let 140 KB of text expand to 400 million values for pydantic.
MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_VALUES = 100_000
# libyaml when PyYAML has it: ten times faster, and it refuses deep nesting at once, where the
# pure-Python loader took 1.7 s to hit the recursion limit on 2 KB of "[[[[..." (fuzzing).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _too_many_values(data: Any, limit: int) -> bool:
    """True when ``data`` holds more than ``limit`` values, counting aliased (shared) parts at every
    use, as validation would visit them. Iterative, and stops at the limit, so a self-referencing
    alias cannot loop."""
    count = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            stack.extend(item)
        if count > limit:
            return True
    return False


def parse_routing(data: Any, source: str = "routing config") -> RoutingPolicy:
    """Validate YAML text, bytes or an already-loaded mapping."""
    if isinstance(data, str | bytes) and len(data) > MAX_CONFIG_BYTES:
        unit = "bytes" if isinstance(data, bytes) else "characters"
        raise RoutingConfigError(f"{source}: {len(data)} {unit}, more than the {MAX_CONFIG_BYTES} allowed")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RoutingConfigError(f"{source}: not UTF-8 text: {exc}") from exc
    if isinstance(data, str):
        try:
            data = yaml.load(data, Loader=_YAML_LOADER)  # a safe loader either way
        except yaml.YAMLError as exc:
            raise RoutingConfigError(f"{source}: not valid YAML: {exc}") from exc
        except RecursionError:  # found by fuzzing: "[[[[..." is deeper than PyYAML's recursion
            raise RoutingConfigError(f"{source}: not valid YAML: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutingConfigError(f"{source}: the top level must be a mapping")
    if _too_many_values(data, MAX_CONFIG_VALUES):
        raise RoutingConfigError(f"{source}: more than {MAX_CONFIG_VALUES} values (YAML aliases expand at every use)")
    try:
        return RoutingPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise RoutingConfigError(f"{source}: {problems}") from exc


def load_routing_file(path: str | Path) -> RoutingPolicy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingConfigError(f"cannot read routing config {path}: {exc}") from exc
    return parse_routing(text, str(path))
