"""Every NATS subject, queue group and KV bucket of the fleet, in one place.

Edge processes talk to their own (leaf) server; the cloud-served subjects reach the hub over the
leaf link. Subjects carry no per-device tokens: a device id is in the payload or headers, never
in a subject, so subject count stays bounded at a thousand devices.
"""

from __future__ import annotations

CLOUD_LLM = "xz.cloud.llm"  # request: chat messages -> streamed text
CLOUD_ASR = "xz.cloud.asr"  # request: 16 kHz PCM -> transcript
QUEUE_LLM = "llm"  # queue groups: one worker of the group takes each request
QUEUE_ASR = "asr"
CANCEL_PREFIX = "xz.cancel"  # xz.cancel.<turn id>: barge-in, stop streaming that turn
HEARTBEAT_PREFIX = "xz.fleet.heartbeat"  # xz.fleet.heartbeat.<edge id>: sessions, capacity, link state


def cancel_subject(turn_id: str) -> str:
    return f"{CANCEL_PREFIX}.{turn_id}"


def heartbeat_subject(edge_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{edge_id}"


def inbox_prefix(edge_id: str) -> str:
    """``_INBOX.<edge id>``: every reply inbox of an edge's connection starts with it.

    The hub lets an edge's leaf link receive only its own inboxes (``shared.nats.configs``), so one
    edge cannot read the replies streamed to another; the edge id must be its NATS user.
    """
    return f"_INBOX.{edge_id}"


# The hub's JetStream domain: every client uses nc.jetstream(domain=JS_DOMAIN), so the same calls
# work on the hub and from an edge's leaf server.
JS_DOMAIN = "xiaozhi"

# JetStream key-value buckets (in the hub).
ROUTING_BUCKET = "xz_routing"  # key ROUTING_KEY: the fallback routing config every edge watches
ROUTING_KEY = "routing"
CACHE_BUCKETS = {"tts": "xz_cache_tts", "answer": "xz_cache_answer"}  # L2 caches, with a TTL
# One key per device whose token an admin revoked (shared.nats.revoked): every edge watches it.
REVOKED_BUCKET = "xz_revoked"

# Headers of the streaming protocol (shared.nats.streaming).
H_TURN = "Xz-Turn"
H_GEN = "Xz-Gen"
H_STREAM = "Xz-Stream"
H_SEQ = "Xz-Seq"
H_END = "Xz-End"
H_ERROR = "Xz-Error"
H_EDGE = "Xz-Edge"
H_WORKER = "Xz-Worker"
# Which device and session a request serves: only for the worker's log lines, never for routing.
H_DEVICE = "Xz-Device"
H_SESSION = "Xz-Session"

_TOKEN_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def safe_token(text: str) -> str:
    """``text`` as one subject token (no dots, spaces or wildcards)."""
    out = "".join(c if c in _TOKEN_OK else "_" for c in text)
    return out or "_"
