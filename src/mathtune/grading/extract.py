"""Pull the final answer out of a model's response (and out of a benchmark's gold solution).

An extractor is a function `text -> str | None`. They are tried in order and the first one that
finds something wins; the order is configurable per benchmark (`extract_answer(text, order)`,
`mathtune grade --extract boxed,answer_is`). Names live in `EXTRACTORS`; `DEFAULT` is the order
used when none is given:

    boxed         last \\boxed{...} / \\fbox{...} (nested braces); adjacent boxes such as
                  "\\boxed{2} and \\boxed{3}" are joined as "2, 3"
    gsm8k         the text after the last "#### "
    final_answer  "The final answer is X" / "Final answer: X" (Minerva style)
    answer_is     "the answer is X" / "Answer: X"
    therefore     last sentence opening with Therefore / Thus / Hence / So: its last $math$
                  (right-hand side of an "=") or last number
    bold          last markdown **bold** span
    short         the whole response when it is a bare answer ("C", "x = 5", "\\frac{1}{2}")
    last_number   the last number in the text

Everything here is (close to) linear in the input size: boxes are found by scanning from the
right with bounded brace matching, and the regex extractors read only the last `MAX_SCAN`
characters, where final answers live, so 1 MB of garbage costs milliseconds.

Try it:  python -c "from mathtune.grading import extract_answer as e; print(e('So the answer is 18.'))"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..errors import unknown_name_error

MAX_SCAN = 50_000
# A group of boxes counts as one multi-part answer when they are this close and only
# separators ("and", ",", "or", "$", spaces) stand between them.
_BOX_JOIN_GAP = re.compile(r"^[\s$,;.]*(?:(?:and|or|&|\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad)[\s$,;]*)?$")

Extractor = Callable[[str], "str | None"]


# ----------------------------------------------------------------------------- braces


def match_brace(text: str, open_pos: int, max_pos: int | None = None) -> int:
    """Index of the `}` closing the `{` at `open_pos`, or -1 when unbalanced (iterative, O(n))."""
    depth = 0
    end = len(text) if max_pos is None else max_pos
    i = open_pos
    while i < end:
        c = text[i]
        if c == "\\" and i + 1 < end and text[i + 1] in "{}":
            i += 2  # \{ and \} are literal braces (sets), not grouping
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
MAX_BOXES = 1000  # adjacent boxes joined into one answer, at most


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


def _last_box_start(text: str, before: int) -> int:
    return max(text.rfind("\\boxed", 0, before), text.rfind("\\fbox", 0, before))


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """The trailing group of boxes as (start, end, content), left to right: the last box
    (or the outermost box around it), plus earlier boxes only separators away from it.
    Scans from the right; every scan is bounded, so the cost stays linear-ish on any input."""
    start = _last_box_start(text, len(text))
    while start >= 0 and not _BOX.match(text, start):
        start = _last_box_start(text, start)
    found = _box_at(text, start) if start >= 0 else None
    if found is None:
        return []
    group = [(start, found[1], found[0])]
    nesting = 0
    for _ in range(MAX_BOXES):
        prev = _last_box_start(text, group[0][0])
        if prev < 0:
            break
        before = _box_at(text, prev, group[0][0])
        if before is None:  # does not close before the next box: encloses it, or is broken
            outer = _box_at(text, prev) if len(group) == 1 and nesting < 5 else None
            if outer is not None and outer[2] and outer[1] >= group[0][1]:
                group, nesting = [(prev, outer[1], outer[0])], nesting + 1
                continue
            break
        gap = text[before[1] : group[0][0]]
        if len(gap) > 40 or not _BOX_JOIN_GAP.match(gap):
            break
        group.insert(0, (prev, before[1], before[0]))
    return group


# ----------------------------------------------------------------------------- spans


_FILLER = re.compile(
    r"^(?:(?:approximately|about|roughly|around|exactly|precisely|simply|just|equal\s+to|given\s+by)\s+|=\s*|\\approx\s*|≈\s*)+",
    re.IGNORECASE,
)


def _after_marker(text: str) -> str | None:
    """The answer that starts at the beginning of `text` (just after "the answer is")."""
    s = _FILLER.sub("", text.lstrip(" \t:*"))
    if not s:
        return None
    if s.startswith(("\\boxed", "\\fbox")):
        box = _box_at(s, 0)
        return box[0] if box else None
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(open_):
            end = s.find(close, len(open_))
            inner = s[len(open_) : end] if end > 0 else ""
            # "$18. Then $5 ..." is money, not math: a sentence break inside means plain text
            if end > 0 and not re.search(r"\n|\.\s", inner):
                return inner.strip() or None
            break
    # plain text: up to the end of the line or sentence (a "." not inside a number)
    line = s.split("\n", 1)[0]
    m = re.search(r"\.(?!\d)|(?<=\S)\s+(?:because|since|which|as|so)\b|;", line)
    ans = (line[: m.start()] if m else line).strip().rstrip(",:*").strip()
    return ans or None


def _clip(text: str) -> str:
    return text[-MAX_SCAN:] if len(text) > MAX_SCAN else text


# ----------------------------------------------------------------------------- extractors


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{}/\\fbox{}; trailing adjacent boxes are joined with ", "."""
    parts: list[str] = []
    for _, _, content in _boxes(text):
        if content and content not in parts:
            parts.append(content)
    return ", ".join(parts) if parts else None


def extract_gsm8k(text: str) -> str | None:
    """The text after the last "####" (GSM8K's answer line)."""
    text = _clip(text)
    pos = text.rfind("####")
    if pos < 0:
        return None
    ans = text[pos + 4 :].split("\n", 1)[0].strip().rstrip(".").strip()
    return ans or None


def _last_marker(text: str, pattern: re.Pattern[str]) -> str | None:
    text = _clip(text)
    last = None
    for m in pattern.finditer(text):
        last = m
    if last is None:
        return None
    return _after_marker(text[last.end() :])


_FINAL = re.compile(r"final\s+answer\s*(?:is|:|=)\s*(?:that\s+)?", re.IGNORECASE)
_ANSWER_IS = re.compile(
    r"(?:the\s+(?:correct\s+|final\s+)?(?:answer|option|choice)\s+(?:is|should\s+be|would\s+be)\s*:?|\banswer\s*:)\s*",
    re.IGNORECASE,
)


def extract_final_answer(text: str) -> str | None:
    """"The final answer is X" / "Final Answer: X"."""
    return _last_marker(text, _FINAL)


def extract_answer_is(text: str) -> str | None:
    """"the answer is X" / "Answer: X"."""
    return _last_marker(text, _ANSWER_IS)


_THEREFORE = re.compile(
    r"(?:^|[.!?\n]\s*)(?:Therefore|Thus|Hence|So|In conclusion)\b[^\n]*?(?:[.!?](?=\s|$)|$)",
    re.IGNORECASE | re.MULTILINE,
)
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")
_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?|-?\.\d+")


def _last_number(text: str) -> str | None:
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    if last is None:
        return None
    num = last.group(0).replace("$", "").rstrip(",")
    return num or None


def extract_therefore(text: str) -> str | None:
    """The last "Therefore/Thus/Hence/So ..." sentence: its last inline math or number."""
    text = _clip(text)
    last = None
    for m in _THEREFORE.finditer(text):
        last = m
    if last is None or re.search(r"\d", text[last.end() :]):
        return None  # reasoning went on after it: "So she has 9 left. ... makes $18."
    sentence = last.group(0)
    maths = [next(g for g in m.groups() if g is not None) for m in _INLINE_MATH.finditer(sentence)]
    maths = [m for m in maths if not _PROSE.search(re.sub(r"\\text\{[^{}]*\}", "", m))]  # "$2 each, making $"
    if maths:
        expr = maths[-1].strip()
        if "=" in expr and not expr.startswith("\\{"):
            expr = expr.rsplit("=", 1)[1].strip()
        return expr.rstrip(".").strip() or None
    m = re.search(r"\b(?:is|are|equals|=|be|gives|get)\s+(.*)$", sentence)
    if m:
        tail = _after_marker(m.group(1))
        num = _last_number(tail) if tail else None
        if num:
            return num
    return _last_number(sentence)


def extract_bold(text: str) -> str | None:
    """The last markdown **bold** span (after any "Answer:" label inside it), when no number
    follows it (a bold "**Step 1:**" heading is not an answer)."""
    text = _clip(text)
    last = None
    for m in re.finditer(r"\*\*([^*\n]{1,200})\*\*", text):
        last = m
    if last is None or re.search(r"\d", text[last.end() :]):
        return None
    span = last.group(1).strip()
    if ":" in span:
        rest = span.rsplit(":", 1)[1].strip()
        if not rest:
            return None  # a label such as "**Answer:**" whose value is outside the bold
        span = rest
    span = span.rstrip(".").strip()
    if span.startswith("$") and span.endswith("$") and len(span) > 1:
        span = span.strip("$").strip()
    return span or None


def extract_short(text: str) -> str | None:
    """The whole response when it is a bare answer: one short line that is not a sentence
    ("C", "x = 5", "\\frac{1}{2}", "18 apples", or one or two bare words like "Monday")."""
    s = text.strip()
    if not s or len(s) > 80 or "\n" in s:
        return None
    if not re.fullmatch(r"[A-Za-z]+(?: [A-Za-z]+)?\.?", s):
        bare = re.sub(r"\\text\s*\{[^{}]*\}|\\[A-Za-z]+", " ", s)
        if len(re.findall(r"[A-Za-z']{2,}", bare)) >= 2:
            return None  # a sentence, not an answer
    s = s.rstrip(".").strip()
    if s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    return s or None


def extract_last_number(text: str) -> str | None:
    """The last number in the text (signs, thousands separators, decimals, a/b, %)."""
    return _last_number(_clip(text))


EXTRACTORS: dict[str, Extractor] = {
    "boxed": extract_boxed,
    "gsm8k": extract_gsm8k,
    "final_answer": extract_final_answer,
    "answer_is": extract_answer_is,
    "therefore": extract_therefore,
    "bold": extract_bold,
    "short": extract_short,
    "last_number": extract_last_number,
}
DEFAULT: tuple[str, ...] = tuple(EXTRACTORS)


def check_order(order: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate an extractor order ("a,b" or a sequence); unknown names raise MathtuneError."""
    if order is None:
        return DEFAULT
    names = [n.strip() for n in order.split(",")] if isinstance(order, str) else list(order)
    names = [n for n in names if n]
    for name in names:
        if name not in EXTRACTORS:
            raise unknown_name_error("extractor", name, EXTRACTORS)
    return tuple(names) or DEFAULT


def extract_answer(text: str, order: Sequence[str] | str | None = None) -> str | None:
    """The final answer in `text` by the first extractor (in `order`) that finds one, else None."""
    names = check_order(order)
    if not text or not text.strip():
        return None
    # R1-style outputs: the answer follows the reasoning block; look inside it only as a fallback
    if "</think>" in text:
        found = _cascade(text.rsplit("</think>", 1)[1], names)
        return found if found is not None else _cascade(text, names)
    return _cascade(text, names)


def _cascade(text: str, names: tuple[str, ...]) -> str | None:
    if not text.strip():
        return None
    for name in names:
        found = EXTRACTORS[name](text)
        if found is not None and found.strip():
            return found.strip()
    return None


def gold_answer(gold_raw: str) -> str:
    """The gold answer from a benchmark field: GSM8K solution ("... #### 18"), MATH solution
    (last \\boxed{}), or a bare value ("18", "$\\frac{1}{2}$")."""
    raw = str(gold_raw).strip()
    if "####" in raw:
        found = extract_gsm8k(raw)
        return found.replace(",", "") if found and re.fullmatch(r"-?[\d,]+(\.\d+)?", found) else (found or "")
    if "\\boxed" in raw or "\\fbox" in raw:
        found = extract_boxed(raw)
        if found is not None:
            return found
    if len(raw) > 1 and raw.startswith("$") and raw.endswith("$"):
        raw = raw.strip("$").strip()
    return raw
