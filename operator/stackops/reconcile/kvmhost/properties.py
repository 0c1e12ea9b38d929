"""agent.properties as Java reads it: a port of `java.util.Properties.load(InputStream)` and of the escaping of
`Properties.store(OutputStream, …)` (JDK 17), so that stackops sees the keys the cloudstack-agent sees.

Java's rules: the file's bytes are ISO-8859-1 characters. Physical lines end at \\n, \\r or \\r\\n (nothing else:
not U+2028, U+0085, \\v or \\f, which Python's `str.splitlines()` also splits at). Blanks (space, tab, form
feed) at the start of a line are skipped and blank lines ignored; a logical line whose first character is `#` or
`!` is a comment, to the end of its physical line. A line ending in an odd number of backslashes continues on the
next physical line, whose leading blanks are dropped (the backslash too). The key ends at the first unescaped `=`,
`:` or blank; blanks and one `=` or `:` after it are skipped, the rest of the logical line is the value. In key and
value `\\t \\n \\r \\f \\uXXXX` are unescaped and a backslash before any other character yields that character.
The last assignment of a key wins. A malformed `\\uXXXX` makes Java refuse the whole file (here: the key or value
reads as None, which equals nothing stackops wants, so a managed key's line is replaced whole).

Text comes in as Python text (the probe decodes the file as UTF-8) and is looked at as the agent does: its UTF-8
bytes taken one by one as ISO-8859-1 characters. Lines stackops writes are ASCII (`line`), so kept lines keep
their bytes. Pure functions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_TERMINATOR = re.compile(r"\r\n|\r|\n")
BLANKS = " \t\f"
_UNESCAPED = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_ESCAPED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "=": "\\=", ":": "\\:", "#": "\\#",
            "!": "\\!"}


@dataclass(frozen=True)
class Entry:
    """One key's logical line: physical lines `first`..`last`; key/value unescaped, None when malformed."""

    first: int
    last: int
    key: str | None
    value: str | None


@dataclass(frozen=True)
class Parsed:
    """A file's logical lines: its entries, the index of each comment line, and whether the file ends inside a
    continuation (a last line ending in an odd number of backslashes: a line appended after it would join)."""

    entries: list[Entry]
    comments: list[int]
    open_end: bool


def as_java_reads(text: str) -> str:
    """The characters the agent reads: each byte of the file as one ISO-8859-1 character (the file's text is its
    bytes decoded as UTF-8 with `surrogateescape`, so a byte that is not UTF-8 is that byte again here)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def from_java_chars(chars: str) -> str:
    """Inverse of `as_java_reads` (the bytes back, read as UTF-8)."""
    return chars.encode("latin-1").decode("utf-8", "surrogateescape")


def physical_lines(chars: str) -> list[tuple[str, str]]:
    """(content, terminator) per physical line; the last one's terminator is "" when the file does not end in
    one."""
    lines = []
    start = 0
    for match in _TERMINATOR.finditer(chars):
        lines.append((chars[start:match.start()], match.group()))
        start = match.end()
    if start < len(chars):
        lines.append((chars[start:], ""))
    return lines


def _continues(segment: str) -> bool:
    return (len(segment) - len(segment.rstrip("\\"))) % 2 == 1


def parse(lines: list[str]) -> Parsed:
    """The logical lines of physical lines (contents without terminators), as JDK 17's LineReader joins them: a
    comment or a blank line is one only while the logical line is still empty (also after a lone backslash)."""
    entries: list[Entry] = []
    comments: list[int] = []
    open_end = False
    logical, first = "", None
    for index, content in enumerate(lines):
        segment = content.lstrip(BLANKS)
        if not logical:
            if not segment:
                first = None
                continue
            if segment[0] in "#!":
                comments.append(index)
                first = None
                continue
        first = index if first is None else first
        if _continues(segment):
            logical += segment[:-1]
            open_end = index == len(lines) - 1
            if not open_end:
                continue
        else:
            logical += segment
        key, value = split(logical)
        entries.append(Entry(first, index, key, value))
        logical, first = "", None
    return Parsed(entries, comments, open_end)


def split(logical: str) -> tuple[str | None, str | None]:
    """Key and value of a logical line, unescaped, as Properties.load separates them."""
    end, value_start, separated, escaped = 0, len(logical), False, False
    while end < len(logical):
        char = logical[end]
        if char in "=:" and not escaped:
            value_start, separated = end + 1, True
            break
        if char in BLANKS and not escaped:
            value_start = end + 1
            break
        escaped = not escaped if char == "\\" else False
        end += 1
    while value_start < len(logical):
        char = logical[value_start]
        if char not in BLANKS:
            if separated or char not in "=:":
                break
            separated = True
        value_start += 1
    return unescape(logical[:end]), unescape(logical[value_start:])


def unescape(text: str) -> str | None:
    """Properties.load's loadConvert; None for a malformed `\\uXXXX` (Java throws). UTF-16 surrogate pairs from
    `\\uXXXX` become one character, as in a Java string."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char != "\\":
            out.append(char)
            continue
        if i == len(text):
            return None
        char = text[i]
        i += 1
        if char == "u":
            digits = text[i:i + 4]
            if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                return None
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_UNESCAPED.get(char, char))
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def escape(text: str, key: bool) -> str:
    """Properties.store's saveConvert with Unicode escapes (store to a stream): backslash, `=`, `:`, `#`, `!`,
    tab, newline, carriage return and form feed escaped, a leading space (every space in a key) escaped, anything
    outside printable ASCII as `\\uXXXX` (UTF-16 code units, upper-case hex)."""
    out: list[str] = []
    for i, char in enumerate(text):
        if char == " ":
            out.append("\\ " if key or i == 0 else " ")
        elif char in _ESCAPED:
            out.append(_ESCAPED[char])
        elif " " < char <= "~":
            out.append(char)
        else:
            units = char.encode("utf-16-be", "surrogatepass")
            out += [f"\\u{units[j] << 8 | units[j + 1]:04X}" for j in range(0, len(units), 2)]
    return "".join(out)


def line(key: str, value: str) -> str:
    """`key=value` as Properties.store writes it: ASCII, one physical line."""
    return f"{escape(key, key=True)}={escape(value, key=False)}"


def load(text: str) -> dict[str, str]:
    """What Properties.load makes of the file (entries with a malformed escape left out, where Java fails)."""
    chars = as_java_reads(text)
    values: dict[str, str] = {}
    for entry in parse([content for content, _ in physical_lines(chars)]).entries:
        if entry.key is not None and entry.value is not None:
            values[entry.key] = entry.value
    return values
