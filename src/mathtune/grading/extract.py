"""Pull the final answer out of a model's response (and out of a benchmark's gold solution).

An extractor is a function `text -> str | None`; names live in `EXTRACTORS` and `DEFAULT` is
the order used when none is given (`extract_answer(text, order)`, `mathtune grade --extract`):

    boxed         the last \\boxed{...} / \\fbox{...}; boxes only separators apart
                  ("\\boxed{2} \\quad\\text{and}\\quad \\boxed{3}", "\\(\\boxed{2}\\) and \\(\\boxed{3}\\)")
                  are one answer, joined as "2, 3"
    final_answer  "The final answer is X" / "Final Answer: X" (Minerva style)
    answer_is     "the answer is X" / "Answer: X" / "Answer $X$"
    gsm8k         the text after the last "#### "
    therefore     last sentence opening with Therefore / Thus / Hence / So: its last object
    bold          last markdown **bold** span
    short         the whole response when it is a bare answer ("C", "x = 5", "\\frac{1}{2}")
    last_math     the last mathematical object, whole: a math span, or a plain relation
                  ("x <= 7"), tuple ("(7, 6)") or number
    last_number   the last number in the text

The fallbacks (therefore, bold, last_math, last_number) read nothing from a response that was
cut off (`cut_off`: it stops inside a formula, on a word or operator that cannot end a
sentence, or part-way through a line it repeats): it never concluded, and its trailing number
matches a gold only by accident.
Enumeration markers ("5. **Check**") and bases of powers ("3^") are not objects; `[asy]`
figure code is removed before anything is read (spans.py). A computation chain "2 + 3 = 5"
gives its result, but "0 = 5x - 7y + 4" is an equation with its sides swapped and stays whole.

Anchored extractors (boxed, final_answer, answer_is) that stand next to each other in
the order compete by position: the one found *last* in the text wins, so a closing "The final
answer is $10$" outranks an intermediate \\boxed{}; a marker followed only by words ("the
answer is correct") never outranks a box. After a marker, a bare value is read up to the end of
its clause ("12 because ..."); a sentence ("The largest $n$ is 34") gives its last object;
math spans listed to the end of the clause ("$0$ and $1$.", "$1$, $3$, and $5$") are one answer.
The others are fallbacks, tried in order.

Everything here is (close to) linear in the input size (see spans.py); the regex extractors
read only the last `MAX_SCAN` characters, where final answers live.

Try it:  python -c "from mathtune.grading import extract_answer as e; print(e('So the answer is 18.'))"
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import unknown_name_error
from .spans import (
    _box_at,
    boxes,
    joinable,
    last_object,
    match_brace,
    math_spans,
    objects,
    strip_figures,
    trailing_group,
    unescape,
)

__all__ = ["DEFAULT", "EXTRACTORS", "check_order", "extract_answer", "gold_answer", "match_brace"]

MAX_SCAN = 50_000
Extractor = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Found:
    answer: str
    pos: int  # where it starts in the text (anchored extractors compete by position)


def _clip(text: str) -> str:
    return text[-MAX_SCAN:] if len(text) > MAX_SCAN else text


# ----------------------------------------------------------------------------- boxes


def _items(content: str) -> int:
    depth, n = 0, 1
    for c in content:
        depth += c in "([{"
        depth -= c in ")]}"
        n += c in ",;" and depth == 0
    return n


def find_boxed(text: str, parts: int = 1) -> Found | None:
    """The trailing group of boxes; when the gold has `parts` > 1 parts and the group holds
    fewer, earlier boxes too, even with text between them ("(a) \\boxed{2} ... (b) \\boxed{3}")."""
    found = boxes(text)
    group = trailing_group(text, found)
    if not group:
        return None
    count = sum(_items(b.text) for b in group)
    if count < parts:
        earlier = found[: len(found) - len(group)]
        while earlier and count < parts:
            count += _items(earlier[-1].text)
            group = [earlier.pop(), *group]
        if count != parts:
            group = trailing_group(text, found)
    contents: list[str] = []
    for b in group:
        if b.text and b.text not in contents:
            contents.append(b.text)
    return Found(", ".join(contents), group[0].start) if contents else None


# ----------------------------------------------------------------------------- markers

_FILLER = re.compile(
    r"^(?:(?:approximately|about|roughly|around|exactly|precisely|simply|just|equal\s+to|given\s+by|that)\s+|=\s*|\\approx\s*|≈\s*)+",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"(?<!\b[apAP])(?<!\b[apAP]\.[mM])\.(?!\d)|\s+(?:because|since|as|so|which|where|when|given\s+that)\b|;|\n")
_EXPLANATION = re.compile(r"\s+(?:because|since|as|given\s+that|where|when|if)\b|;")
_PROSE = re.compile(r"[A-Za-z]{2,}")


def _delimited(s: str) -> str | None:
    """The content of the math span or box that opens `s`, if one does."""
    if s.startswith(("\\boxed", "\\fbox")):
        box = _box_at(s, 0)
        return box[0] if box else None
    spans = math_spans(s[:5000])
    if spans and spans[0].start == 0:
        return _span_run(s, spans)
    return None


_LIST_GAP = re.compile(r"\s*(?:,\s*(?:and|or)?|and|or|\\text\s*\{\s*(?:and|or|,)\s*\})\s*")
_RUN_END = re.compile(
    r"\s*(?:[.!?,;:](?!\d)|\n|$)|\s+(?:because|since|as|so|which|where|when|respectively)\b"
)


def _span_run(s: str, spans: list) -> str:
    """The math span opening `s`, or every span of a list that closes the clause ("$0$ and
    $1$.", "$2$, $3$, or $5$"), joined as one answer "0, 1"."""
    run = [spans[0]]
    for span in spans[1:]:
        if not _LIST_GAP.fullmatch(s[run[-1].end : span.start]):
            break
        run.append(span)
    if len(run) > 1 and _RUN_END.match(s, run[-1].end):
        return ", ".join(sp.text for sp in run)
    return spans[0].text


def _words_outside_math(s: str) -> int:
    bare = re.sub(r"\\(?:begin|end)\{[^{}]*\}|\$[^$]*\$|\\\(.*?\\\)|\\boxed\{[^{}]*\}|\\text\s*\{[^{}]*\}|\\[A-Za-z]+", " ", s)
    return len(_PROSE.findall(bare))


def after_marker(text: str) -> str | None:
    """The answer that starts at the beginning of `text` (just after "the answer is")."""
    s = _FILLER.sub("", text.lstrip(" \t\n:*"))
    if not s:
        return None
    inner = _delimited(s)
    if inner is not None:
        return inner or None
    line = s.split("\n", 1)[0]
    m = _CLAUSE_END.search(line)
    clause = (line[: m.start()] if m else line).strip().rstrip(",:*").strip()
    if _words_outside_math(clause) >= 3 or (_words_outside_math(clause) == 2 and re.search(r"\d|\$", clause)):
        # a sentence ("The smallest $k$ is 27"): its last object, before any explanation
        full = line[: m.start()] if m and m.group(0).startswith(".") else line
        head = _EXPLANATION.split(full, maxsplit=1)[0]
        obj = last_object(head)
        if obj is not None:
            return obj.text
    return clause or None


_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")


def _last_match(text: str, pattern: re.Pattern[str]) -> Found | None:
    """The answer after the last match of `pattern` that is followed by one."""
    matches = list(pattern.finditer(text))
    for m in reversed(matches[-20:]):
        ans = after_marker(text[m.end() : m.end() + 2000])
        if ans and not _EMPTY_BOX.search(ans):  # "the answer is within \boxed{}": a template, no answer
            return Found(final_side(ans), m.start())
    return None


_FINAL = re.compile(
    r"final\s+answer(?:\s+(?:to|for|of)\b[^.:\n$]{0,60}?)?\s*(?:\*\*)?\s*"
    r"(?:is\b|:|=|should\s+be|would\s+be|(?<=\n)|(?=\$|\\\(|\\\[|\\boxed))\s*(?:\*\*)?\s*:?",
    re.IGNORECASE,
)
_ANSWER_IS = re.compile(
    r"\b(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)(?:\s+(?:to|for)\b[^.:\n$]{0,40}?)?\s*(?:\*\*)?\s*"
    r"(?:is\b|should\s+be|would\s+be|will\s+be|=|:)\s*(?:\*\*)?\s*:?"
    r"|(?:^|(?<=\n)|(?<=\*\*))[ \t]*answer\b[ \t]*(?:\*\*)?\s*(?=\$|\\\(|\\\[|\\boxed|-?\d)"  # "Answer $ 9 $", "**Answer** 9"
    r"|\banswer\b\s*(?=\$|\\\(|\\\[|\\boxed)",  # "... our answer $\\frac34$"
    re.IGNORECASE,
)


def find_final_answer(text: str) -> Found | None:
    return _last_match(_clip(text), _FINAL)


def find_answer_is(text: str) -> Found | None:
    return _last_match(_clip(text), _ANSWER_IS)


def find_gsm8k(text: str) -> Found | None:
    text = _clip(text)
    pos = text.rfind("####")
    if pos < 0:
        return None
    ans = text[pos + 4 :].split("\n", 1)[0].strip().rstrip(".").strip()
    return Found(ans, pos) if ans else None


# ----------------------------------------------------------------------------- fallbacks

_THEREFORE = re.compile(
    r"(?:^|[.!?\n]\s*)(?:Therefore|Thus|Hence|So|In conclusion)\b[^\n]*?(?:[.!?](?=\s|$)|$)",
    re.IGNORECASE | re.MULTILINE,
)


def find_therefore(text: str) -> Found | None:
    """The last "Therefore/Thus/Hence/So ..." sentence, when no number follows it: its last
    object before any explanation ("because ...")."""
    text = _clip(text)
    if cut_off(text):
        return None
    last = None
    for m in _THEREFORE.finditer(text):
        last = m
    if last is None or re.search(r"\d", text[last.end() :]):
        return None  # reasoning went on after it: "So she has 9 left. ... makes $18."
    head = _EXPLANATION.split(last.group(0), maxsplit=1)[0]
    obj = last_object(head)
    return Found(final_side(obj.text.rstrip(".").strip()), last.start() + obj.start) if obj else None


def find_bold(text: str) -> Found | None:
    """The last markdown **bold** span (after any "Answer:" label inside it), when no number
    follows it (a bold "**Step 1:**" heading is not an answer)."""
    text = _clip(text)
    if cut_off(text):
        return None
    last = None
    for m in re.finditer(r"\*\*([^*\n]{1,200})\*\*", text):
        last = m
    if last is None or re.search(r"\d", text[last.end() :]):
        return None
    span = last.group(1).strip()
    if ":" in span:
        span = span.rsplit(":", 1)[1].strip()
        if not span:
            return None  # a label such as "**Answer:**" whose value is outside the bold
    span = span.rstrip(".").strip()
    if span.startswith("$") and span.endswith("$") and len(span) > 1:
        span = span.strip("$").strip()
    return Found(span, last.start()) if span else None


def find_short(text: str) -> Found | None:
    """The whole response when it is a bare answer: one short line that is not a sentence."""
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
    return Found(s, 0) if s else None


def final_side(expr: str) -> str:
    """"2 + 3 = 5" -> "5": a computation chain (no letters before the last "=") gives its
    result; an equation such as "y = 2x + 3" is kept whole."""
    sides = re.split(r"(?<![<>!\\])=(?!=)", expr)
    if len(sides) > 1 and sides[-1].strip():
        head = re.sub(r"\\(?:frac|dfrac|sqrt|cdot|times|div|left|right)(?![A-Za-z])", "", "=".join(sides[:-1]))
        if not re.search(r"[A-Za-z]", head) and not (len(sides) == 2 and _has_unknowns(sides[-1])):
            return sides[-1].strip()
    return expr


def _has_unknowns(side: str) -> bool:
    """Whether an expression holds unknowns in algebra ("4x-5y", "2 + y"), so that "0 = 5x + 4"
    is an equation with its sides swapped, not a computation whose result is "5x + 4". A unit
    after a number ("15 \\text{ m}", "15 cm") is not an unknown."""
    bare = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}|\\[A-Za-z]+", " ", side)
    return bool(_UNKNOWN.search(bare))


_UNKNOWN = re.compile(
    r"\d[A-Za-z](?![A-Za-z])(?=\s*(?:[-+*/^=(]|$))"  # 4x, 5y (a coefficient)
    r"|(?<![A-Za-z])[A-Za-z](?![A-Za-z])\s*[-+*/^]"  # x + ..., y^2
    r"|[-+*/^]\s*[A-Za-z](?![A-Za-z])"  # ... - z
)


MAX_TAIL = 300  # characters of text after a fallback answer: more, and it was not the answer


def _tail_ok(text: str, end: int) -> bool:
    """A fallback answer ends the response: a long stretch after it (a loop of words, a
    truncated derivation) means the response never gave one."""
    return len(text) - end <= MAX_TAIL or len(re.sub(r"\s+", "", text[end:])) <= MAX_TAIL


_DANGLING = re.compile(
    r"(?:[=+/^,({\[]|(?<!-)-|(?<!\*)\*"  # an operator or opening bracket (a colon may introduce a figure)
    r"|\\(?:cdot|times|div|pm|mp|le|leq|ge|geq|ne|neq|approx|equiv|frac|dfrac|sqrt|left|implies|Rightarrow|q?quad)"
    r"|(?<![A-Za-z])(?:is|are|was|were|be|been|the|an|of|to|by|for|from|with|into|than|which|and|or|but|as|if|"
    r"because|since|its|their|when|where|while|equals|gives|gets|makes|would|could|should|must|let|becomes)"
    r")\s*$",
    re.IGNORECASE,
)
_OPENERS = {"\\[": re.compile(r"(?<!\\)\\\["), "\\(": re.compile(r"(?<!\\)\\\(")}
_CLOSERS = {"\\[": re.compile(r"(?<!\\)\\\]"), "\\(": re.compile(r"(?<!\\)\\\)")}


def _last(pattern: re.Pattern[str], text: str) -> int:
    pos = -1
    for m in pattern.finditer(text):
        pos = m.start()
    return pos


def _unclosed_math(text: str) -> bool:
    """The text stops inside a display or inline formula (`\\[`, `\\(`, `$$`, `\\begin{..}`)."""
    if any(_last(_OPENERS[k], text) > _last(_CLOSERS[k], text) for k in _OPENERS):
        return True
    if text.count("$$") % 2 and "$" not in text[text.rfind("$$") + 2 :]:
        return True  # an odd "$$" with no dollar after it opens a display ("= $$43.00 ... $70" is money)
    return text.count("\\begin{") > text.count("\\end{")


def _repeats_cut(text: str) -> bool:
    """The last line is the cut-off start of an earlier line: a repetition loop stopped by the
    length limit mid-line ("... deleted 15 * 10 = 1" after "... deleted 15 * 10 = 150 new apps.")."""
    lines = [ln.strip() for ln in text[-8_000:].split("\n")]
    lines = [ln for ln in lines if ln]
    last = lines[-1] if lines else ""
    if len(lines) < 2 or len(last) < 20 or " " not in last or last.endswith((".", "!", "?", "}", "$", "\\]", "\\)")):
        return False  # a complete sentence, or the close of a formula ("\\end{align*}")
    return any(len(ln) > len(last) and ln.startswith(last) for ln in lines[:-1])


@functools.lru_cache(maxsize=64)  # the fallbacks ask in turn about the same text
def cut_off(text: str) -> bool:
    """Whether a response stops mid-computation (it hit the length limit) rather than ending
    like a conclusion: inside a formula, on a word or operator that cannot end a sentence, or
    part-way through a line it repeats. Such a response gave no final answer, so the fallbacks
    (therefore, bold, last object, last number) read nothing from it; marked answers count."""
    text = text.rstrip()
    return bool(_DANGLING.search(text[-200:])) or _unclosed_math(text) or _repeats_cut(text)


def find_last_math(text: str, parts: int = 1) -> Found | None:
    """The last object; when the gold has `parts` > 1 parts, the last `parts` objects if only
    separators stand between them ("x = -7 or x = 1")."""
    found = objects(_clip(text))
    if not found or not _tail_ok(_clip(text), found[-1].end) or cut_off(_clip(text)):
        return None
    tail = found[-parts:] if parts > 1 and len(found) >= parts else found[-1:]
    clipped = _clip(text)
    if len(tail) > 1 and all(joinable(clipped[a.end : b.start]) for a, b in zip(tail, tail[1:], strict=False)):
        return Found(", ".join(o.text for o in tail), tail[0].start)
    return Found(final_side(found[-1].text), found[-1].start)


_NUMBER = re.compile(r"[-−]?\\?\$?[\d.,]+(?:/[\d.,]+)?(?:\\?%)?")


def find_last_number(text: str) -> Found | None:
    """The last object when it is a number: never a number pulled out of a relation, tuple or
    matrix (`$x < 3$` has no last number)."""
    found = objects(_clip(text))
    if not found or not _tail_ok(_clip(text), found[-1].end) or not _NUMBER.fullmatch(found[-1].text):
        return None
    if cut_off(_clip(text)):
        return None
    return Found(found[-1].text.replace("\\$", "").replace("$", "").rstrip(","), found[-1].start)


FINDERS: dict[str, Callable[[str], Found | None]] = {
    "boxed": find_boxed,
    "final_answer": find_final_answer,
    "answer_is": find_answer_is,
    "gsm8k": find_gsm8k,
    "therefore": find_therefore,
    "bold": find_bold,
    "short": find_short,
    "last_math": find_last_math,
    "last_number": find_last_number,
}
ANCHORED = frozenset({"boxed", "final_answer", "answer_is"})


def _as_extractor(name: str) -> Extractor:
    def run(text: str) -> str | None:
        found = FINDERS[name](text)
        return found.answer if found else None

    run.__name__ = f"extract_{name}"
    run.__doc__ = FINDERS[name].__doc__
    return run


EXTRACTORS: dict[str, Extractor] = {name: _as_extractor(name) for name in FINDERS}
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


# ----------------------------------------------------------------------------- the cascade


def _mathy(answer: str) -> bool:
    return bool(re.search(r"[\d\\^=<>]", answer)) or bool(re.fullmatch(r"\(?[A-Ea-e]\)?", answer.strip()))


def _best_anchored(text: str, names: list[str], parts: int) -> str | None:
    """Among anchored extractors, the answer found last; a words-only answer ("the answer is
    correct") only when no anchored answer holds any mathematics."""
    found = []
    for name in names:
        f = find_boxed(text, parts) if name == "boxed" else FINDERS[name](text)
        if f is not None and f.answer.strip():
            found.append(f)
    if not found:
        return None
    mathy = [f for f in found if _mathy(f.answer)]
    return max(mathy or found, key=lambda f: f.pos).answer.strip()


def _cascade(text: str, names: tuple[str, ...], parts: int) -> str | None:
    if not text.strip():
        return None
    i = 0
    while i < len(names):
        if names[i] in ANCHORED:
            j = i
            while j < len(names) and names[j] in ANCHORED:
                j += 1
            got = _best_anchored(text, list(names[i:j]), parts)
            i = j
        else:
            f = find_last_math(text, parts) if names[i] == "last_math" else FINDERS[names[i]](text)
            got = f.answer.strip() if f is not None else None
            i += 1
        if got:
            return got
    return None


def extract_answer(text: str, order: Sequence[str] | str | None = None, *, parts: int = 1) -> str | None:
    """The final answer in `text` by the extractors in `order`, else None. `parts` is how many
    parts the expected answer has (boxes further apart are then read as one answer)."""
    names = check_order(order)
    if not text or not text.strip():
        return None
    text = strip_figures(unescape(text))
    # R1-style outputs: the answer follows the reasoning block; look inside it only as a fallback
    if "</think>" in text:
        found = _cascade(text.rsplit("</think>", 1)[1], names, parts)
        return found if found is not None else _cascade(text, names, parts)
    return _cascade(text, names, parts)


def gold_answer(gold_raw: str) -> str:
    """The gold answer from a benchmark field: GSM8K solution ("... #### 18"), MATH solution
    (its last \\boxed{}, or every box of a multi-part answer), or a bare value ("18", "$\\frac{1}{2}$")."""
    raw = strip_figures(unescape(str(gold_raw))).strip()
    if "####" in raw:
        found = find_gsm8k(raw)
        ans = found.answer if found else ""
        return ans.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", ans) else ans
    if "\\boxed" in raw or "\\fbox" in raw:
        found_boxes = boxes(raw)
        group = found_boxes if len(raw) <= 300 else trailing_group(raw, found_boxes)
        contents: list[str] = []
        for b in group:
            if b.text and b.text not in contents:
                contents.append(b.text)
        if contents:
            return ", ".join(contents)
    if len(raw) > 1 and raw.startswith("$") and raw.endswith("$"):
        raw = raw.strip("$").strip()
    return raw
