"""The utterance mix: categories with weights and phrase lists, sampled per turn.

A mix file is YAML::

    categories:
      commands:                 # handled by the intent fast path on the edge node
        weight: 0.3
        phrases: ["Set the volume to 40.", "What time is it?"]
      everyday:                 # repeated questions: caches matter
        weight: 0.5
        distribution: zipf      # uniform (default) | zipf
        zipf_s: 1.1             # the exponent; phrase i (0-based) has weight 1 / (i + 1) ** s
        phrases: ["What's the weather like today?", ...]
      open:
        weight: 0.2
        phrases: [...]
    seed: 7                     # optional: the default random seed of a run

Weights are relative (normalised to sum 1). A turn first draws a category by weight, then a phrase
within it (uniformly, or Zipf by list position so the first phrases repeat most).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_MIX_YAML",
    "Category",
    "Mix",
    "MixError",
    "MixSampler",
    "default_mix",
    "load_mix",
    "parse_mix",
    "zipf_weights",
]

DISTRIBUTIONS = ("uniform", "zipf")
_CATEGORY_KEYS = {"weight", "phrases", "distribution", "zipf_s"}

DEFAULT_MIX_YAML = """\
categories:
  commands:
    weight: 0.3
    phrases:
      - Set the volume to 40.
      - Turn the volume down.
      - Turn the volume up.
      - What time is it?
      - What's the date today?
      - Set the brightness to 60.
      - Switch to dark mode.
  everyday:
    weight: 0.5
    distribution: zipf
    zipf_s: 1.1
    phrases:
      - What's the weather like today?
      - Tell me a joke.
      - How are you today?
      - What should I cook for dinner?
      - Tell me a fun fact.
      - What is the capital of France?
      - How many days are in a year?
      - Who wrote Romeo and Juliet?
      - What is the tallest mountain in the world?
      - How far is the moon from the earth?
      - What is the boiling point of water?
      - How many legs does a spider have?
      - What is the largest ocean?
      - Who painted the Mona Lisa?
      - What color is the sky?
  open:
    weight: 0.2
    phrases:
      - Why do cats purr when they are happy?
      - Can you explain how rainbows form?
      - What is a good way to learn a new language?
      - How do airplanes stay in the air?
      - Give me an idea for a birthday present for my sister.
      - What makes the ocean salty?
      - How do bees make honey?
      - Why do leaves change color in autumn?
      - What is the difference between a virus and a bacterium?
      - How can I sleep better at night?
      - Tell me a short story about a brave little robot.
      - What are some tips for staying focused while studying?
      - How does a refrigerator keep food cold?
      - Why is exercise good for the brain?
      - What would happen if the earth stopped spinning?
      - How do volcanoes form?
      - Why do we have seasons?
      - How does the internet work?
      - What is the difference between weather and climate?
      - Why do onions make people cry?
      - How do fish breathe under water?
      - What causes thunder and lightning?
      - How are mountains made?
      - Why do birds fly south for the winter?
      - How does a compass work?
      - What is the biggest animal that ever lived?
      - How do plants drink water?
      - Why is the ocean blue?
      - How do solar panels make electricity?
      - What is inside a black hole?
      - How long do elephants live?
      - Why do stars twinkle at night?
      - How does a vaccine protect the body?
      - What did dinosaurs eat?
      - How do submarines dive and come back up?
      - Why does bread rise in the oven?
      - How do bats find their way in the dark?
      - What is the speed of sound?
      - How are rainbows different from halos?
      - Why do zebras have stripes?
      - How does a microwave oven heat food?
      - What makes a diamond so hard?
      - How do ants find their way home?
      - Why do we need to sleep?
      - How does the moon change the tides?
"""


class MixError(ValueError):
    """A mix file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Category:
    name: str
    weight: float
    phrases: tuple[str, ...]
    distribution: str = "uniform"
    zipf_s: float = 1.1

    def phrase_weights(self) -> list[float]:
        if self.distribution == "zipf":
            return zipf_weights(len(self.phrases), self.zipf_s)
        return [1.0 / len(self.phrases)] * len(self.phrases)


@dataclass(frozen=True)
class Mix:
    categories: tuple[Category, ...]
    seed: int | None = None
    source: str = "<default>"

    def phrases(self) -> list[str]:
        """Every distinct phrase, in order of first appearance."""
        return list(dict.fromkeys(p for c in self.categories for p in c.phrases))

    def sampler(self, seed: int | None = None) -> MixSampler:
        return MixSampler(self, random.Random(seed if seed is not None else self.seed))


class MixSampler:
    """Draws (category, phrase) pairs from a mix with its own random generator."""

    def __init__(self, mix: Mix, rng: random.Random) -> None:
        self.mix = mix
        self.rng = rng
        total = sum(c.weight for c in mix.categories)
        self._cat_weights = [c.weight / total for c in mix.categories]
        self._phrase_weights = [c.phrase_weights() for c in mix.categories]

    def sample(self) -> tuple[str, str]:
        i = self.rng.choices(range(len(self.mix.categories)), weights=self._cat_weights)[0]
        cat = self.mix.categories[i]
        phrase = self.rng.choices(cat.phrases, weights=self._phrase_weights[i])[0]
        return cat.name, phrase


def zipf_weights(n: int, s: float) -> list[float]:
    """Normalised Zipf weights for ranks 1..n: w_i = i**-s / sum_j j**-s."""
    if n < 1:
        raise ValueError("zipf_weights needs n >= 1")
    raw = [1.0 / (i**s) for i in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_mix(data: Any, source: str = "<mix>") -> Mix:
    """Validate a loaded YAML document; raises :class:`MixError` naming the offending key."""
    if not isinstance(data, dict):
        raise MixError(f"{source}: the top level must be a mapping with a 'categories' key")
    unknown = set(data) - {"categories", "seed"}
    if unknown:
        raise MixError(f"{source}: unknown top-level key(s) {sorted(unknown)} (allowed: categories, seed)")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise MixError(f"{source}: seed must be an integer, got {seed!r}")
    cats = data.get("categories")
    if not isinstance(cats, dict) or not cats:
        raise MixError(f"{source}: 'categories' must be a non-empty mapping of name -> {{weight, phrases}}")
    out: list[Category] = []
    for name, spec in cats.items():
        where = f"{source}: categories.{name}"
        if not isinstance(spec, dict):
            raise MixError(f"{where}: must be a mapping with 'weight' and 'phrases'")
        unknown = set(spec) - _CATEGORY_KEYS
        if unknown:
            raise MixError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_CATEGORY_KEYS)})")
        weight = spec.get("weight")
        if not _number(weight) or not weight > 0:
            raise MixError(f"{where}.weight: must be a number > 0, got {weight!r}")
        phrases = spec.get("phrases")
        if not isinstance(phrases, list) or not phrases:
            raise MixError(f"{where}.phrases: must be a non-empty list of strings")
        for i, p in enumerate(phrases):
            if not isinstance(p, str) or not p.strip():
                raise MixError(f"{where}.phrases[{i}]: must be a non-empty string, got {p!r}")
        dist = spec.get("distribution", "uniform")
        if dist not in DISTRIBUTIONS:
            raise MixError(f"{where}.distribution: must be one of {list(DISTRIBUTIONS)}, got {dist!r}")
        zipf_s = spec.get("zipf_s", 1.1)
        if not _number(zipf_s) or not zipf_s > 0:
            raise MixError(f"{where}.zipf_s: must be a number > 0, got {zipf_s!r}")
        if "zipf_s" in spec and dist != "zipf":
            raise MixError(f"{where}.zipf_s: only meaningful with distribution: zipf")
        out.append(Category(str(name), float(weight), tuple(p.strip() for p in phrases), dist, float(zipf_s)))
    return Mix(tuple(out), seed, source)


def load_mix(path: str | Path | None = None) -> Mix:
    """The mix in ``path`` (YAML), or the built-in default when ``path`` is None."""
    if path is None:
        return default_mix()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MixError(f"cannot read mix file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MixError(f"mix file {path} is not valid YAML: {exc}") from exc
    return parse_mix(data, str(path))


def default_mix() -> Mix:
    return parse_mix(yaml.safe_load(DEFAULT_MIX_YAML), "<default>")
