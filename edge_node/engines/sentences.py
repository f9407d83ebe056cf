"""Cut a streamed LLM reply into speakable chunks for a non-streaming TTS.

Piper synthesises whole sentences, so the time to first audio is the LLM's time to the first
sentence end plus that sentence's synthesis. Chunks are therefore released as soon as their end is
certain, and the first chunk of a reply is also cut at a comma, or before a word that opens a
clause ("and", "because", "when"), once it is long enough, so the device starts speaking while the
LLM is still writing.
"""

from __future__ import annotations

import re

__all__ = ["SentenceSplitter", "clean_for_speech"]

# Enders that need a following whitespace to be certain ("3.5", "e.g.x", "file.txt" are not ends).
_ENDERS = ".!?…;"
# CJK enders: certain immediately (no spaces between CJK sentences).
_CJK_ENDERS = "。！？；"
# Closing quotes/brackets that belong to the sentence they end.
_CLOSERS = "\"'”’)]}」』）》"
# Closers that cannot open a chunk: a CJK ender is cut at once, so its closing quote may arrive in
# the next delta and is dropped there (it is not spoken anyway).
_STRAY_CLOSERS = "”’)]}」』）》"
# First-clause cut points: ASCII ones need a following space ("1,000", "10:30"), CJK ones do not.
_CLAUSE = ",:"
_CJK_CLAUSE = "，、："
# Words that open a clause: a first chunk with no comma is cut before one of them, so the device
# need not wait for the LLM to finish a long first sentence (nor the TTS to speak all of it).
_JOINERS = frozenset("and but because so when which while since although though where whereas or if".split())
# A '.' after one of these is not a sentence end.
_ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr st vs etc e.g i.e approx dept est inc ltd co no mt ave fig".split())


def _is_cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"


def _has_content(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class SentenceSplitter:
    """Incremental splitter: ``push`` deltas as they stream, ``flush`` at the end of the reply.

    Not thread safe; one per reply (``flush`` also makes it ready for the next reply).
    """

    def __init__(self, first_clause_min_chars: int = 12, max_chars: int = 200) -> None:
        self.first_clause_min_chars = first_clause_min_chars
        self.max_chars = max(8, max_chars)
        self._buf = ""
        self._emitted = False

    def push(self, delta: str) -> list[str]:
        """Add streamed text; returns the chunks whose end is now certain."""
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            self._emit(piece, out)
        return out

    def flush(self) -> list[str]:
        """End of reply: return what is left (cut to ``max_chars``) and start over."""
        out: list[str] = []
        while len(self._buf.strip()) > self.max_chars:
            cut = self._length_cut()
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            self._emit(piece, out)
        self._emit(self._buf, out)
        self._buf = ""
        self._emitted = False
        return out

    # -- internals -----------------------------------------------------------------------------

    def _emit(self, piece: str, out: list[str]) -> None:
        text = piece.strip().lstrip(_STRAY_CLOSERS).strip()
        if text and _has_content(text):
            out.append(text)
            self._emitted = True

    def _find_cut(self) -> int | None:
        """Index just after the earliest certain boundary, or None to wait for more text."""
        cut = self._boundary()
        if (cut is None or cut > self.max_chars) and len(self._buf) > self.max_chars:
            return self._length_cut()
        return cut

    def _length_cut(self) -> int:
        """Cut an over-long chunk at its last space within ``max_chars`` (hard cut if none)."""
        lead = len(self._buf) - len(self._buf.lstrip())
        limit = lead + self.max_chars
        space = self._buf.rfind(" ", lead, limit + 1)
        return space + 1 if space > lead else limit

    def _boundary(self) -> int | None:
        buf = self._buf
        n = len(buf)
        i = 0
        while i < n:
            ch = buf[i]
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
            elif ch in _CJK_ENDERS:
                return self._after_closers(i + 1)
            elif ch in _ENDERS:
                j = i
                while j < n and (buf[j] in _ENDERS or buf[j] in _CLOSERS):
                    j += 1
                if j == n:
                    return None  # "3." may become "3.5": wait for the next character
                if (buf[j].isspace() or _is_cjk(buf[j])) and not self._is_abbreviation(i):
                    return j
                i = j
                continue
            elif not self._emitted:
                if ch in _CJK_CLAUSE and len(buf[: i + 1].strip()) >= self.first_clause_min_chars:
                    return i + 1
                if ch in _CLAUSE and len(buf[: i + 1].strip()) >= self.first_clause_min_chars:
                    if i + 1 == n:
                        return None
                    if buf[i + 1].isspace():
                        return i + 1
                if ch == " " and len(buf[:i].strip()) >= self.first_clause_min_chars and self._joiner_at(i + 1):
                    return i + 1
            i += 1
        return None

    def _joiner_at(self, start: int) -> bool:
        """A whole joining word starts at ``start`` (and is followed by a space: "so" is not "soon")."""
        end = self._buf.find(" ", start)
        return end > start and self._buf[start:end].lower() in _JOINERS

    def _after_closers(self, j: int) -> int:
        while j < len(self._buf) and self._buf[j] in _CLOSERS:
            j += 1
        return j

    def _is_abbreviation(self, dot: int) -> bool:
        """'Dr.', 'e.g.', an initial ('J.') or a list marker ('1.' at a line start) is no end."""
        if self._buf[dot] != ".":
            return False
        start = dot
        while start > 0 and not self._buf[start - 1].isspace():
            start -= 1
        word = self._buf[start:dot].lstrip("\"'(“‘[")
        if not word:
            return False
        if word.lower() in _ABBREVIATIONS:
            return True
        if len(word) == 1 and word.isalpha() and word.isupper():
            return True  # an initial, "J. K. Rowling"
        if word.isdigit():
            before = self._buf[:start]
            return before.strip() == "" or before.rstrip(" \t").endswith("\n")
        return False


_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_MD_BULLET = re.compile(r"^\s*[-*+•]\s+", re.MULTILINE)
_MD_MARKS = re.compile(r"[*`#~]+|(?<!\w)_+|_+(?!\w)")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, symbols & pictographs ext.
    "\U0001f1e6-\U0001f1ff"  # regional indicators (flags)
    "\u2600-\u27bf"  # misc symbols, dingbats
    "\u2b00-\u2bff"  # arrows, stars
    "\ufe0f\u200d\u20e3"  # variation selector, zero-width joiner, keycap
    "]+"
)
_SPACES = re.compile(r"\s+")


def clean_for_speech(text: str) -> str:
    """Remove markdown marks (``*``, ``#``, backticks, links, bullets), emoji and extra whitespace.

    Small LLMs decorate replies for a screen; read aloud, the marks are noise or get spelled out.
    """
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_HEADING.sub("", text)
    text = _MD_BULLET.sub("", text)
    text = _MD_MARKS.sub("", text)
    text = _EMOJI.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
