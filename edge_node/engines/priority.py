"""CPU priority of engine threads: the work a silent device waits for runs ahead of reply tails.

The queues already put a turn's ASR and first sentence ahead of other replies' later sentences,
but once jobs run, they share the cores evenly, so a first sentence is slowed down by the tails of
replies that are already playing (and are well ahead of playback anyway). Linux lets each thread
have its own nice value, so an engine thread runs at nice 0 for FIRST work and at ``TAIL_NICE``
for the rest; an LLM thread drops to ``TAIL_NICE`` once its reply's first clause is out.

Going back from the tail nice value to 0 needs the right to raise priority (root, CAP_SYS_NICE, or
``LimitNICE=20`` in the systemd unit). Without it the first attempt fails, the feature turns itself
off for the process (one log line) and every thread stays at its normal priority.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

__all__ = ["TAIL_NICE", "demote", "enabled", "set_enabled", "use_priority"]

TAIL_NICE = 19
_local = threading.local()
_enabled = hasattr(os, "setpriority") and hasattr(threading, "get_native_id")


def enabled() -> bool:
    return _enabled


def set_enabled(value: bool) -> None:
    global _enabled
    _enabled = value and hasattr(os, "setpriority")


def _set(nice: int) -> bool:
    global _enabled
    if not _enabled:
        return False
    if getattr(_local, "nice", 0) == nice:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        _enabled = False
        log.warning("thread priorities off (cannot set nice %d: %s); grant CAP_SYS_NICE or LimitNICE=20", nice, exc)
        return False
    _local.nice = nice
    return True


def use_priority(first: bool) -> None:
    """Called by a worker thread before each job: nice 0 for FIRST work, TAIL_NICE otherwise."""
    _set(0 if first else TAIL_NICE)


def demote() -> None:
    """The rest of this job is tail work (an LLM reply past its first clause)."""
    _set(TAIL_NICE)
