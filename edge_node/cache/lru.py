"""L1: an in-process LRU of byte values with a byte budget (not an entry count).

Values are sized by ``len(value)`` plus a small per-entry overhead for the key and the
bookkeeping, so a budget of 64 MB means about 64 MB of RSS whatever the mix of entry sizes.
Only the event loop touches it (no lock): gets and puts are O(1) dictionary work.
"""

from __future__ import annotations

from collections import OrderedDict

# Rough cost of one entry beyond its value: the key string, the OrderedDict node, the bytes header.
ENTRY_OVERHEAD = 128


class LruCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(value) + len(key) + ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def peek(self, key: str) -> bytes | None:
        """The value without touching recency or the hit/miss counts."""
        return self._items.get(key)

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value``; returns False (and stores nothing) when it alone exceeds the budget."""
        cost = self._cost(key, value)
        self.delete(key)
        if cost > self.max_bytes:
            return False
        self._items[key] = value
        self.size_bytes += cost
        while self.size_bytes > self.max_bytes:
            old_key, old_value = self._items.popitem(last=False)
            self.size_bytes -= self._cost(old_key, old_value)
            self.evictions += 1
        return True

    def delete(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.size_bytes -= self._cost(key, old)

    def clear(self) -> None:
        self._items.clear()
        self.size_bytes = 0
