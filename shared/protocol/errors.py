"""The one exception type the wire-protocol parsers raise for bad input from a peer.

Everything a device can send wrong (bad JSON, wrong field types, a malformed binary frame) becomes a
:class:`ProtocolError` with a short machine ``code``. The server keys metrics and its close/ignore
policy on the code, and logs the message, so it never has to string-match exception text.
It subclasses ``ValueError`` so generic "bad value" handlers still catch it.
"""

from __future__ import annotations

INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
MISSING_TYPE = "missing_type"
UNKNOWN_TYPE = "unknown_type"
BAD_FIELD = "bad_field"
OVERSIZE = "oversize"
BAD_FRAME = "bad_frame"

CODES: frozenset[str] = frozenset(
    {INVALID_JSON, NOT_OBJECT, MISSING_TYPE, UNKNOWN_TYPE, BAD_FIELD, OVERSIZE, BAD_FRAME}
)

_DEFAULT_MESSAGES = {
    INVALID_JSON: "text frame is not valid UTF-8 JSON",
    NOT_OBJECT: "JSON message is not an object",
    MISSING_TYPE: "JSON message has no string 'type'",
    UNKNOWN_TYPE: "unknown message type",
    BAD_FIELD: "a field has the wrong type or value",
    OVERSIZE: "message is larger than allowed",
    BAD_FRAME: "malformed binary audio frame",
}


class ProtocolError(ValueError):
    """Input from a peer that violates the protocol; ``code`` says which rule, ``message`` says how.

    Pickles cleanly (args are ``(code, message)``) so it can cross process boundaries in tests and
    worker pools.
    """

    def __init__(self, code: str, message: str = "") -> None:
        if not message:
            message = _DEFAULT_MESSAGES.get(code, code)
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"
