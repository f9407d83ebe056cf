"""Caches of an edge node (the capacity issue, item 4).

Two caches, each an in-process LRU (L1) in front of a directory on disk (L3, survives a restart):

- TTS audio: the ready Opus packets of one spoken chunk, keyed by voice, text, sample rate and
  frame length; a hit skips Piper, resampling and encoding.
- answers: the full reply text of a context-free, time-independent question
  (``policy.is_reusable_question``), with the time it was stored; a hit skips the LLM.
"""

from edge_node.cache.answers import AnswerCache
from edge_node.cache.disk import DiskCache
from edge_node.cache.keys import answer_key, normalize_question, tts_key
from edge_node.cache.lru import LruCache
from edge_node.cache.packets import pack_packets, unpack_packets
from edge_node.cache.policy import is_reusable_question
from edge_node.cache.tiered import TieredCache

__all__ = [
    "AnswerCache",
    "DiskCache",
    "LruCache",
    "TieredCache",
    "answer_key",
    "is_reusable_question",
    "normalize_question",
    "pack_packets",
    "tts_key",
    "unpack_packets",
]
