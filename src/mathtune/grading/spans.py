"""Where answers sit in a text: brace matching, boxes, inline math spans and plain-text
mathematical objects (numbers, relations, tuples), all with their positions.

extract.py builds its answer cascade on these. Every scan is linear or bounded: boxes are
found from the right with bounded brace matching (at most `MAX_BOXES`), math spans and plain
objects are read by regexes with bounded repetition, so 1 MB of hostile text costs
milliseconds.

    boxes(text)        the last boxes (outermost when nested), left to right
    math_spans(text)   $..$, $$..$$, \\(..\\), \\[..\\] (money such as "$5 and $6" is not math)
    last_object(text)  the last mathematical object, taken whole: a math span, or a plain
                       relation ("x <= 7", "2 < x < 5"), tuple / interval ("(4, -1)"), or number
    unescape(text)     JSON-doubled LaTeX ("\\\\frac{1}{2}") read as single-escaped
    strip_figures(text) `[asy]...[/asy]` figure code removed (its numbers are never answers)

Plain numbers exclude enumeration markers at the start of a line ("5. **Check**", "2) Add")
and the bases and exponents of powers ("3^2").

Try it:  python -c "from mathtune.grading.spans import last_object as o; print(o('so x <= 7 here'))"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BOXES = 16  # boxes looked at, from the right
MAX_BOX_GAP = 2000  # characters between two boxes that still count as the same answer region


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


# ----------------------------------------------------------------------------- braces


def match_brace(text: str, open_pos: int, max_pos: int | None = None) -> int:
    """Index of the `}` closing the `{` at `open_pos`, or -1 when unbalanced (iterative, O(n)).
    `\\{` and `\\}` are literal braces; `\\\\` is a row break, so `\\\\}` still closes."""
    depth = 0
    end = len(text) if max_pos is None else max_pos
    i = open_pos
    while i < end:
        c = text[i]
        if c == "\\" and i + 1 < end and text[i + 1] in "{}\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


# ----------------------------------------------------------------------------- JSON-doubled LaTeX

_COMMANDS = (
    "frac|dfrac|tfrac|sqrt|boxed|fbox|text|textbf|mathrm|mathbf|pi|cdot|times|div|left|right|begin|end|"
    "le|leq|ge|geq|lt|gt|ne|neq|infty|cup|cap|pm|mp|circ|degree|angle|alpha|beta|gamma|theta|lambda|"
    "sin|cos|tan|log|ln|exp|binom|dots|ldots|cdots|quad|qquad|overline|mathbb|approx|in|sum|prod|int"
)
_DOUBLED = re.compile(r"(?<!\\)\\\\(?:" + _COMMANDS + r")(?![A-Za-z])")


def strip_figures(text: str) -> str:
    """`[asy]...[/asy]` figure code (and an unclosed `[asy]` to the end) removed: drawing
    commands are full of numbers and tuples that are never the answer. Linear."""
    if "[asy]" not in text:
        return text
    out, pos = [], 0
    while True:
        start = text.find("[asy]", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find("[/asy]", start)
        if end < 0:
            break
        out.append(" ")
        pos = end + len("[/asy]")
    return "".join(out)


def unescape(text: str) -> str:
    """Halve every backslash run when the text is doubly escaped (a JSON dump: `\\\\frac`)."""
    if "\\\\" not in text or not _DOUBLED.search(text):
        return text
    return re.sub(r"\\+", lambda m: "\\" * max(1, len(m.group(0)) // 2), text)


# ----------------------------------------------------------------------------- boxes

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")


def _box_at(text: str, start: int, max_pos: int | None = None) -> tuple[str, int, bool] | None:
    """(content, end, closed) of the box starting at `start`, or None when it does not close
    before `max_pos`. Without `max_pos` an unclosed box yields the rest of the text."""
    m = _BOX.match(text, start)
    if not m:
        return None
    pos = m.end()
    if pos < len(text) and text[pos] == "{":
        close = match_brace(text, pos, max_pos)
        if close < 0:
            return (text[pos + 1 :].strip(), len(text), False) if max_pos is None else None
        return text[pos + 1 : close].strip(), close + 1, True
    tok = re.match(r"[^\s$,;}]+", text[pos : pos + 200])  # "\boxed 5": one token
    return (tok.group(0).rstrip("."), pos + tok.end(), True) if tok and tok.group(0).rstrip(".") else None


def _box_start_before(text: str, before: int) -> int:
    while True:
        i = max(text.rfind("\\boxed", 0, before), text.rfind("\\fbox", 0, before))
        if i < 0 or _BOX.match(text, i):
            return i
        before = i


def boxes(text: str, limit: int = MAX_BOXES) -> list[Span]:
    """The last `limit` boxes, left to right (a box nested in another counts as the outer one).
    Stops at a gap longer than `MAX_BOX_GAP`, so the cost is bounded on any input."""
    start = _box_start_before(text, len(text))
    found = _box_at(text, start) if start >= 0 else None
    if found is None:
        return []
    out = [Span(start, found[1], found[0])]
    nesting = 0
    while len(out) < limit:
        prev = _box_start_before(text, out[0].start)
        if prev < 0 or out[0].start - prev > MAX_BOX_GAP + 500:
            break
        before = _box_at(text, prev, out[0].start)
        if before is None:  # does not close before the next box: encloses it, or is broken
            outer = _box_at(text, prev) if nesting < 5 else None
            if outer is not None and outer[2] and outer[0] and outer[1] >= out[0].end:
                out = [Span(prev, outer[1], outer[0])] + [b for b in out if b.start >= outer[1]]
                nesting += 1
                continue
            break
        if out[0].start - before[1] > MAX_BOX_GAP:
            break
        out.insert(0, Span(prev, before[1], before[0]))
    return out


# A gap between two boxes that only separates parts of one answer: math delimiters, spacing,
# "and"/"or", punctuation, and the label of the next part ("$ and $y = ").
_JOINERS = re.compile(
    r"\\[()\[\]]|\$|\\q?quad(?![A-Za-z])|\\[,;:! ]|~|\\\\|&|"
    r"\\(?:text|mathrm|textbf|mbox)\s*\{\s*(?:,|and|or|also)?\s*\}|"
    r"\b(?:and|or|also)\b|[,;.]|"
    r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=",
)


def joinable(gap: str) -> bool:
    """Whether the text between two boxes only separates parts of one answer."""
    return len(gap) <= 80 and not _JOINERS.sub("", gap).strip()


def trailing_group(text: str, found: list[Span]) -> list[Span]:
    """The last box of `found` (boxes of `text`) plus earlier boxes only separators away."""
    if not found:
        return []
    group = [found[-1]]
    for b in reversed(found[:-1]):
        if b.end > group[0].start or not joinable(text[b.end : group[0].start]):
            break
        group.insert(0, b)
    return group


# ----------------------------------------------------------------------------- math spans

_OPENERS = re.compile(r"\$\$|\\\[|\\\(|\$")
_CLOSER = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}
MAX_SPAN = 5000  # characters of one math span


class _Closers:
    """Next unescaped occurrence of each closing delimiter, remembered so that a text full of
    openers without closers is scanned once, not once per opener (linear, not quadratic)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.seen: dict[str, tuple[int, int]] = {}  # closer -> (searched from, found at or -1)

    def after(self, closer: str, pos: int) -> int:
        hit = self.seen.get(closer)
        if hit is not None and hit[0] <= pos and (hit[1] < 0 or hit[1] >= pos):
            return hit[1]
        i = pos
        while True:
            i = self.text.find(closer, i)
            if i <= 0 or self.text[i - 1] != "\\" or closer != "$":
                break
            i += 1  # an escaped \$ does not close
        self.seen[closer] = (pos, i)
        return i


_WORDS = re.compile(r"[A-Za-z]{2,}")


def _is_money(content: str) -> bool:
    """"$5 each, making $" (or "$ then $") is the prose between two prices, not a formula."""
    bare = re.sub(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+", " ", content)
    words = _WORDS.findall(bare)
    if re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", bare):
        return True
    if words and (content[:1].isspace() or content[-1:].isspace()):
        return True  # "$ then $": the text between two prices
    return bool(words) and re.match(r"\s*\d", content) is not None and content.endswith((" ", ","))


def math_spans(text: str) -> list[Span]:
    """Inline and display math, left to right (contents stripped); prose-like spans skipped.
    Inline math ($..$, \\(..\\)) stays on one line."""
    out: list[Span] = []
    closers = _Closers(text)
    pos = 0
    while True:
        m = _OPENERS.search(text, pos)
        if m is None:
            return out
        tok = m.group(0)
        if tok[0] == "$" and m.start() > 0 and text[m.start() - 1] == "\\":
            pos = m.start() + 1  # \$ is a dollar sign
            continue
        close = closers.after(_CLOSER[tok], m.end())
        content = text[m.end() : close] if close >= 0 else ""
        inline = tok in ("$", "\\(")
        if close < 0 or close - m.end() > MAX_SPAN or not content.strip() or (inline and "\n" in content):
            pos = m.end()
            continue
        if tok == "$" and _is_money(content):
            pos = m.end()
            continue
        out.append(Span(m.start(), close + len(_CLOSER[tok]), content.strip()))
        pos = close + len(_CLOSER[tok])


# ----------------------------------------------------------------------------- plain objects

_N = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)"
_SNUM = rf"[-−]?\$?{_N}(?:\s*/\s*{_N})?%?"
_VAR = r"(?:[A-Za-z](?:_\{?\w+\}?)?(?:\([A-Za-z]\))?)"
_OP = r"(?:<=|>=|=<|=>|≤|≥|<|>|\\le(?:q)?|\\ge(?:q)?|\\lt|\\gt)"
_END = r"(?:[-−]?\\?(?:infty|inf)|" + _SNUM + ")"
_PLAIN = re.compile(
    rf"(?<![\w.]){_SNUM}\s*{_OP}\s*{_VAR}\s*{_OP}\s*{_SNUM}(?![\w])"  # 2 < x < 5
    rf"|(?<![\w\\]){_VAR}\s*{_OP}\s*{_SNUM}(?![\w])"  # x <= 7
    rf"|[(\[]\s*{_END}(?:\s*,\s*{_END})+\s*[)\]]"  # (4, -1), [2, inf)
    r"|(?<![\w.:])\d{1,2}:\d{2}(?::\d{2})?(?:\s*[aApP]\.?[mM]\b\.?)?(?![\w:])"  # 3:15 p.m.
    r"|(?<![\w.:])\d+:\d+(?![\w:])"  # a ratio 3:8
    # 3,504.25  -2  3/4  12% (not the 8 of "x^8" or "ax+8", nor the 3 of "3^2")
    rf"|(?<![\w.^_{{+*/]){_SNUM}(?![\w^]|[.,]\d)"
)
# "5. **Check**", "2) Add": an enumeration marker at the start of a line, not a value
_LIST_MARKER = re.compile(r"[.)][ \t]+\S")
_LINE_LEAD = re.compile(r"[ \t#*>-]*")


def plain_objects(text: str, masked: list[Span] | None = None) -> list[Span]:
    """Numbers, relations and tuples outside the `masked` spans, left to right."""
    if masked:
        chars = list(text)
        for s in masked:
            chars[s.start : s.end] = " " * (s.end - s.start)
        text = "".join(chars)
    out = []
    for m in _PLAIN.finditer(text):
        if _LIST_MARKER.match(text, m.end()) and re.fullmatch(r"\d{1,3}", m.group(0)):
            line_start = text.rfind("\n", 0, m.start()) + 1
            if _LINE_LEAD.fullmatch(text, line_start, m.start()):
                continue
        value = m.group(0).strip().rstrip(",.")
        if value and re.search(r"\d", value):
            out.append(Span(m.start(), m.end(), value))
    return out


_BARE_VARIABLE = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+")


def objects(text: str) -> list[Span]:
    """Every mathematical object in `text` (math spans and plain objects), left to right.
    A math span that is only a variable name ("for all real $x$") is not an answer."""
    spans = math_spans(text)
    found = [s for s in spans if not _BARE_VARIABLE.fullmatch(s.text)]
    found += plain_objects(text, spans)
    return sorted(found, key=lambda s: s.start)


def last_object(text: str) -> Span | None:
    found = objects(text)
    return found[-1] if found else None
