"""A list of Opus packets as one byte string: ``u32 count`` then ``u16 length + packet`` each.

Opus packets are at most 1275 bytes (RFC 6716), so a u16 length is plenty. ``unpack_packets``
checks every length against the data and raises ValueError on anything that does not add up.
"""

from __future__ import annotations

import struct

_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<H")


def pack_packets(packets: list[bytes]) -> bytes:
    parts = [_COUNT.pack(len(packets))]
    for packet in packets:
        if len(packet) > 0xFFFF:
            raise ValueError(f"packet of {len(packet)} bytes is too big to pack")
        parts.append(_LEN.pack(len(packet)))
        parts.append(bytes(packet))
    return b"".join(parts)


def unpack_packets(data: bytes) -> list[bytes]:
    if len(data) < _COUNT.size:
        raise ValueError("packed packets: truncated header")
    (count,) = _COUNT.unpack_from(data)
    if count > (len(data) - _COUNT.size) // _LEN.size:
        raise ValueError(f"packed packets: count {count} does not fit in {len(data)} bytes")
    out: list[bytes] = []
    pos = _COUNT.size
    view = memoryview(data)
    for i in range(count):
        if pos + _LEN.size > len(data):
            raise ValueError(f"packed packets: truncated at packet {i}")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise ValueError(f"packed packets: packet {i} runs past the end")
        out.append(bytes(view[pos : pos + n]))
        pos += n
    if pos != len(data):
        raise ValueError(f"packed packets: {len(data) - pos} trailing bytes")
    return out
