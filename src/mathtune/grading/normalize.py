"""String-level normalisation of answers, and the pure-Python number reader (the fast path).

`clean()` turns an extracted answer into a canonical LaTeX-ish string: JSON-doubled
backslashes are halved; math delimiters, `$`, `\\left`/`\\right`, spacing commands, degrees,
thousands separators (`1,234`, `1{,}234`, `1,\\!234`), `\\text{}` units, trailing words ("18
apples") and a stray trailing "\\" go; `\\dfrac`/`\\tfrac` become `\\frac`, `\\frac12` and
`\\sqrt3` get their braces, `\\left[\\begin{array}..\\right]` is unwrapped, and powers decided
without arithmetic are settled (`trivial_powers`: `1^{(2^{235423523})}` is 1, `0^{n}` for a
visibly positive n is 0, `b^0` for a visible non-zero base is 1), so the size guard never
refuses them. `parse_number()` reads the common number shapes exactly as a `Fraction`
(integers, decimals, decimal commas "2,74", scientific notation, `a\\times10^{b}`, `\\frac{a}{b}`, `a/b`, mixed numbers `2\\frac12`,
repeating decimals `0.\\overline{3}`, a trailing `%`) with no sympy; `clock_time()` and
`ratio()` read "h:mm" and "a:b" pairs.

Numeric policy (see `numbers_equal`):
  * exact rational comparison: 0.5 == 1/2 == 50% (value reading), 5 != 0.05, 5 != 500;
  * a percentage may be read with or without its `%`: gold 5 accepts "5%", gold 0.05 accepts
    "5%"; a bare number is never rescaled, so gold 5 rejects "0.05" and "500";
  * tolerance only for genuinely inexact values: a decimal literal compared with a value that
    has no terminating decimal (1/3, 2/7, pi) matches within relative 1e-6, or when it is that
    value correctly rounded to its places: with >= 6 significant digits in a response, >= 3 in
    a gold (a rounded gold such as 3.14 was asked for; the exact pi still answers it). Two
    decimals or terminating values: exact.

Try it:  python -c "from mathtune.grading.normalize import clean; print(clean(r'\\$1{,}234.00'))"
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction

from .spans import match_brace, unescape

MAX_DIGITS = 4000  # int(str) over ~4300 digits raises in Python >= 3.11; stay well below
MAX_EXP10 = 400  # largest |e| we expand in 1e{e} / 10^{e} on the fast path

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u03c0": "\\pi ",
    "\u221a": "\\sqrt", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u222a": "\\cup ",
    "\u00b0": "^\\circ", "\u2260": "\\ne ", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}
_PLAIN = re.compile(r"[-+]?\$?\s?[\d,.]*\d[\d,.]*%?")
_SIZING = re.compile(r"\\(?:left|right|[bB]igg?[lr]?|middle)(?![A-Za-z])\s*\.?")
_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad(?![A-Za-z])|\\hspace\*?\{[^{}]*\}|~")
_TEXTLIKE = re.compile(r"\\(?:textbf|textit|textrm|textnormal|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|emph|operatorname\*?|hbox)\s*\{")
_BOXLIKE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_DROP = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits|!)(?![A-Za-z])")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")
_UNIT_TEXT = re.compile(r"\s*\\text\s*\{[^{}]*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$")
_TRAIL_WORDS = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?(?:/\d+)?|\.\d+)(?:\\%|%)?)\s*(?P<unit>[A-Za-z][A-Za-z .']*?)(?:\^\{?[23]\}?)?\.?$"
)
_KEEP_WORDS = {"pi", "i", "e", "sqrt", "infty", "and", "or", "x", "y", "z", "n", "k", "a", "b", "c"}
_UNIT_WORDS = re.compile(
    r"^(?:degrees?|deg|units?|square|sq|cubic|cm|mm|km|m|meters?|metres?|inches|inch|in|feet|foot|ft|yards?|"
    r"miles?|mph|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|dollars?|cents?|"
    r"pounds?|lbs?|ounces?|oz|grams?|g|kg|liters?|litres?|ml|gallons?|cups?|percent|points?|students?|"
    r"people|persons?|apples?|eggs?|books?|pages?|cookies?|marbles?|pieces?|times|ways|items?)$",
    re.IGNORECASE,
)


def _unwrap_command(s: str, pattern: re.Pattern[str], keep: str) -> str:
    """Replace `\\cmd{X}` (matched by `pattern` up to its `{`) with keep.format(X)."""
    out: list[str] = []
    pos = 0
    for _ in range(200):
        m = pattern.search(s, pos)
        if not m:
            break
        close = _match(s, m.end() - 1)
        if close < 0:
            break
        out.append(s[pos : m.start()] + keep.format(s[m.end() : close]))
        pos = close + 1
    out.append(s[pos:])
    return "".join(out)


def _match(s: str, open_pos: int) -> int:
    return match_brace(s, open_pos)


def _fix_short_args(s: str) -> str:
    r"""`\frac12` -> `\frac{1}{2}`, `\frac1{x}`, `\frac{x}2`, `\sqrt3` -> `\sqrt{3}`."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    return s


def _group_end(s: str, i: int) -> int:
    """End (exclusive) of the exponent that starts at `i`: a `{..}` or `(..)` group, or one
    character; -1 when there is none."""
    if i >= len(s):
        return -1
    if s[i] == "{":
        close = match_brace(s, i, min(len(s), i + MAX_EXPONENT_TEXT))
        return close + 1 if close >= 0 else -1
    if s[i] == "(":
        depth = 0
        for j in range(i, min(len(s), i + MAX_EXPONENT_TEXT)):
            depth += s[j] == "("
            depth -= s[j] == ")"
            if depth == 0:
                return j + 1
        return -1
    return i + 1 if s[i].isalnum() and not s[i + 1 : i + 2].isdigit() else -1


def _positive(expo: str) -> bool:
    """Whether an exponent is visibly positive: a positive literal, or a positive literal raised
    to any power ("2^{235423523}")."""
    e = expo.strip()
    while len(e) > 1 and (e[0], e[-1]) in (("{", "}"), ("(", ")")) and _group_end(e, 0) == len(e):
        e = e[1:-1].strip()
    if re.fullmatch(r"0*[1-9]\d*(?:\.\d+)?|0*\.\d*[1-9]\d*", e):
        return True
    m = re.match(r"0*[1-9]\d*\s*\^\s*", e)
    return bool(m) and _group_end(e, m.end()) == len(e)


MAX_POWER_TEXT = 2000  # longer answers are left to the size guards
MAX_EXPONENT_TEXT = 300  # an exponent group longer than this is not settled here (bounded cost)
_TRIVIAL_BASE = re.compile(r"(?<![\w.}\)\]\\])([01])\s*\^\s*")
_ZERO_EXPONENT = re.compile(r"\^\s*(?:\{\s*0\s*\}|0(?![\d.]))")


def trivial_powers(s: str) -> str:
    """Powers decided without arithmetic, so that no size guard refuses them: 1^{anything} is 1,
    0^{positive} is 0, and b^0 is 1 for a visible non-zero base b (a number, a letter, a
    parenthesised group). A power juxtaposed with a digit ("2(x)^0", "1^{x}5") is left alone.
    Bounded: at most 50 rewrites of answers up to `MAX_POWER_TEXT` characters."""
    if "^" not in s or len(s) > MAX_POWER_TEXT:
        return s
    pos, done = 0, 0
    while done < 50 and (m := _TRIVIAL_BASE.search(s, pos)):
        end = _group_end(s, m.end())
        pos = m.end()
        if end > 0 and not _digit_at(s, end) and (m.group(1) == "1" or _positive(s[m.end() : end])):
            s = s[: m.start()] + m.group(1) + s[end:]
            pos, done = m.start() + 1, done + 1
    pos = 0
    while done < 100 and (m := _ZERO_EXPONENT.search(s, pos)):
        start = _base_start(s, m.start())
        pos = m.end()
        if start >= 0 and not _digit_at(s, m.end()) and not (start > 0 and s[start - 1].isdigit()):
            s = s[:start] + "1" + s[m.end() :]
            pos, done = start + 1, done + 1
    return s


def _digit_at(s: str, i: int) -> bool:
    return i < len(s) and (s[i].isdigit() or s[i] == ".")


def _base_start(s: str, caret: int) -> int:
    """Start of the visible non-zero base just before `s[caret] == "^"`, or -1."""
    i = caret
    while i > 0 and s[i - 1] == " ":
        i -= 1
    if i > 0 and s[i - 1] == ")":
        depth = 0
        for j in range(i - 1, max(-1, i - MAX_EXPONENT_TEXT), -1):
            depth += s[j] == ")"
            depth -= s[j] == "("
            if depth == 0:
                inner = s[j + 1 : i - 1].strip()
                return j if inner not in ("", "0") and (j == 0 or s[j - 1] not in "\\_^") else -1
        return -1
    m = re.search(r"(?<![\w.\\])(?:\d+(?:\.\d+)?|[A-Za-z])$", s[max(0, i - 40) : i])
    if not m or re.fullmatch(r"0*(?:\.0*)?", m.group(0)):
        return -1
    return i - len(m.group(0))


def _strip_outer_braces(s: str) -> str:
    """"{{x}}" -> "x" in one linear pass (peels only braces that wrap the whole string)."""
    lead = len(s) - len(s.lstrip("{"))
    if lead == 0:
        return s
    closes: dict[int, int] = {}
    stack: list[int] = []
    for i, c in enumerate(s):
        if c == "{" and (i == 0 or s[i - 1] != "\\"):
            stack.append(i)
        elif c == "}" and (i == 0 or s[i - 1] != "\\") and stack:
            j = stack.pop()
            if j < lead:
                closes[j] = i
    peel = 0
    while peel < lead and closes.get(peel) == len(s) - 1 - peel:
        peel += 1
    return s[peel : len(s) - peel].strip() if peel else s


def _strip_units(s: str) -> str:
    """Drop a trailing `\\text{ units}` or plain unit words after a number ("18 apples")."""
    for _ in range(3):
        t = _UNIT_TEXT.sub("", s)
        if not t.strip() or t == s:
            break
        s = t.strip()
    m = _TRAIL_WORDS.match(s)
    if m:
        words = m.group("unit").strip().rstrip(".")
        tokens = words.lower().split()
        if tokens and not any(t in _KEEP_WORDS for t in tokens) and (
            _UNIT_WORDS.match(tokens[0]) or len(tokens[0]) >= 2
        ):
            s = m.group("num")
    return s


def clean(answer: str) -> str:
    """Canonical form of an answer string (linear time; safe on hostile input)."""
    return _clean(answer) if len(answer) > 2000 else _clean_cached(answer)


@functools.lru_cache(maxsize=16384)
def _clean_cached(answer: str) -> str:
    return _clean(answer)


def _clean(answer: str) -> str:
    s = unescape(answer.strip())
    if _PLAIN.fullmatch(s):  # "18", "$1,234.00", "-.5", "12%": the GSM8K fast lane
        s = s.replace("$", "").replace(" ", "").rstrip(".,;:")
        return re.sub(r"^([-+]?)\.(\d)", r"\g<1>0.\2", s)
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"(?<!\\)\\[\[\]()]", " ", s)
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}")
    s = re.sub(r"\\varnothing(?![A-Za-z])|∅|^\\\{\s*\\\}$", r"\\emptyset", s)
    s = re.sub(r"\\mathbb\s*\{?R\}?|ℝ|\\text\{\s*all real numbers\s*\}|^all real numbers$", r"(-\\infty, \\infty)", s)
    s = s.replace("\\langle", "(").replace("\\rangle", ")")
    s = re.sub(r"\\[lr]?vert(?![A-Za-z])", "|", s)
    s = _SIZING.sub("", s)
    # thousands separators before spacing commands go: 1{,}234 and 1,\!234
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3})", "", s)
    s = re.sub(r"(?<=\d),\\!\s*(?=\d{3})", "", s)
    s = _SPACING.sub(" ", s)
    s = _DROP.sub("", s)
    s = _DEGREE.sub("", s)
    s = _unwrap_command(s, _TEXTLIKE, "\\text{{{}}}")
    s = _unwrap_command(s, _BOXLIKE, "{}")
    s = s.replace("\\%", "%")
    s = re.sub(r"\\text\s*\{\s*(?:degrees?|°)\s*\}", "", s)
    s = _fix_short_args(s)
    s = trivial_powers(s)
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(" .,;:").lstrip(" :")
    s = _strip_outer_braces(s)
    s = _strip_units(s)
    if re.fullmatch(r"\\text\s*\{[^{}]*\}", s):
        s = s[s.index("{") + 1 : -1].strip()
    s = re.sub(r"\\text\s*\{\s*(and|or)\s*\}", r" \1 ", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(" .")
    s = re.sub(r"(?:\s*\\+)+$", "", s).rstrip(" .,;:")  # a stray trailing "\" or row break
    s = re.sub(r"^[\[(]\s*(\\begin\{array\}.*\\end\{array\})\s*[\])]$", r"\1", s, flags=re.DOTALL)
    s = re.sub(r"^(-?)\.(\d)", r"\g<1>0.\2", s)
    return s


def key(s: str) -> str:
    """Comparison key: whitespace removed except where it separates a command from a letter."""
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", lambda m: m.group(1) + "\x00", s)
    s = re.sub(r"\s+", "", s)
    return s.replace("\x00", " ")


# ----------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Number:
    """A number read exactly. `decimals` is set for decimal literals (possible roundings)."""

    value: Fraction
    percent: bool = False
    decimals: int | None = None
    significant: int = 0


_DEC = re.compile(r"([-+]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d+))?")
_INT = r"[-+]?\d+"


def _decimal(text: str) -> Number | None:
    m = _DEC.fullmatch(text)
    if not m or len(text) > MAX_DIGITS:
        return None
    sign, body, exp = m.groups()
    if exp is not None and abs(int(exp)) > MAX_EXP10:
        return None
    value = Fraction(body) * (Fraction(10) ** int(exp) if exp else 1)
    if sign == "-":
        value = -value
    if "." not in body:
        return Number(value)
    frac_part = body.split(".", 1)[1]
    digits = body.replace(".", "").lstrip("0")
    return Number(value, decimals=len(frac_part) - (int(exp) if exp else 0), significant=len(digits))


def _fraction(text: str) -> Fraction | None:
    m = re.fullmatch(rf"(-?)\\frac\{{\s*({_INT})\s*\}}\{{\s*({_INT})\s*\}}", text) or re.fullmatch(
        rf"(-?)\(?({_INT})\)?\s*/\s*\(?({_INT})\)?", text
    )
    if not m or len(text) > MAX_DIGITS or int(m.group(3)) == 0:
        return None
    v = Fraction(int(m.group(2)), int(m.group(3)))
    return -v if m.group(1) else v


def _special(text: str) -> Fraction | None:
    """Mixed numbers, repeating decimals and a x 10^b."""
    m = re.fullmatch(r"(-?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\s(\d+)/(\d+))", text)
    if m and len(text) < 200:
        num, den = (int(m.group(3)), int(m.group(4))) if m.group(3) else (int(m.group(5)), int(m.group(6)))
        if 0 < num < den:  # a proper fraction after a whole number reads as a mixed number
            v = int(m.group(2)) + Fraction(num, den)
            return -v if m.group(1) else v
        return None
    m = re.fullmatch(r"(-?)(\d*)\.(\d*)\\(?:overline|bar|dot)\{?(\d+)\}?", text)
    if m and len(text) < 200:
        whole, fixed, rep = int(m.group(2) or 0), m.group(3), m.group(4)
        v = whole + (Fraction(int(fixed or 0)) + Fraction(int(rep), 10 ** len(rep) - 1)) / 10 ** len(fixed)
        return -v if m.group(1) else v
    m = re.fullmatch(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?", text) or re.fullmatch(
        r"()10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?", text
    )
    if m and abs(int(m.group(2))) <= MAX_EXP10 and len(text) < 200:
        return Fraction(m.group(1) or 1) * Fraction(10) ** int(m.group(2))
    return None


def parse_number(s: str) -> Number | None:
    """Read a cleaned answer as an exact number, or None when it is not a plain number."""
    t = s.strip()
    percent = t.endswith("%")
    if percent:
        t = t[:-1].strip()
    t = t.replace(" ", "") if re.fullmatch(r"[-+\d.\s]+", t) else t
    if t.startswith("+"):
        t = t[1:]
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    elif re.fullmatch(r"-?\d+,\d+", t):  # a decimal comma: 2,74 (lists are read in structure.py)
        t = t.replace(",", ".")
    num = _decimal(t)
    if num is not None:
        return Number(num.value, percent, num.decimals, num.significant)
    for reader in (_fraction, _special):
        v = reader(t)
        if v is not None:
            return Number(v, percent)
    return None


def _terminates(v: Fraction) -> bool:
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def approx_equal(literal: Number, exact: Fraction, min_significant: int = 6) -> bool:
    """A decimal literal vs an exact value with no terminating decimal: relative 1e-6, or the
    value correctly rounded to the literal's places with >= `min_significant` digits (6 for a
    response; 3 when the literal is the gold, i.e. the problem asked for a rounded answer)."""
    diff = abs(literal.value - exact)
    if diff <= Fraction(1, 10**6) * abs(exact):
        return True
    k = literal.decimals
    return k is not None and literal.significant >= min_significant and diff <= Fraction(1, 2) / Fraction(10) ** k


def readings(n: Number) -> list[Number]:
    """A number as written, and for "66.7%" also as 0.667 (two more decimal places)."""
    if not n.percent:
        return [n]
    scaled = Number(n.value / 100, False, None if n.decimals is None else n.decimals + 2, n.significant)
    return [Number(n.value, False, n.decimals, n.significant), scaled]


def numbers_equal(gold: Number, pred: Number) -> bool:
    """Exact comparison; `%` on either side allows both readings; see the module docstring."""
    for g in readings(gold):
        for p in readings(pred):
            if g.value == p.value:
                return True
            if p.decimals is not None and g.decimals is None and not _terminates(g.value) and approx_equal(p, g.value):
                return True
            if g.decimals is not None and p.decimals is None and not _terminates(p.value) and approx_equal(g, p.value, 3):
                return True
    return False


# ----------------------------------------------------------------------------- pairs: a:b, h:mm

COMMA_PAIR = re.compile(r"-?\d+,\d+")  # "2,74": a decimal comma, or the list 2, 74
_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*(?:\\text\{\s*)?(?:([apAP])\.?\s*[mM]\.?)?\}?")
_RATIO = re.compile(r"(-?\d+(?:\.\d+)?)\s*:\s*(-?\d+(?:\.\d+)?)")
_ZERO_DEN = re.compile(r"-?\\frac\{[^{}]*\}\{\s*0+\s*\}|-?\(?-?[\d.]+\)?\s*/\s*0+|-?[\d.]+\s*:\s*0+")


def clock_time(s: str) -> tuple[int, int, int, bool] | None:
    """A clock time "h:mm[:ss] [am|pm]" as (hours, minutes, seconds, am/pm given); with am/pm
    the hours are on the 24-hour clock."""
    m = _CLOCK.fullmatch(s.strip())
    if not m:
        return None
    h, minutes, sec = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if m.group(4):
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if m.group(4).lower() == "p" else 0)
    return h, minutes, sec, bool(m.group(4))


def times_equal(a: tuple[int, int, int, bool], b: tuple[int, int, int, bool]) -> bool:
    """Same clock time; when only one side says am/pm, "1:45" matches "1:45 pm" (13:45)."""
    if a[1:3] != b[1:3]:
        return False
    if a[3] == b[3]:
        return a[0] == b[0]
    return a[0] % 12 == b[0] % 12


def ratio(s: str) -> tuple[Fraction, Fraction] | None:
    m = _RATIO.fullmatch(s.strip())
    return (Fraction(m.group(1)), Fraction(m.group(2))) if m else None


def zero_denominator(s: str) -> bool:
    """"3/0", "\\frac{2}{0}", "5:0": a value that is not a number (never equal to another)."""
    return bool(_ZERO_DEN.fullmatch(s.strip()))


# ----------------------------------------------------------------------------- text answers


def choice_letter(s: str) -> str | None:
    """Multiple-choice letter: "C", "(C)", "C)", "(c) 12", "option C" -> "C"."""
    t = re.sub(r"^(?:option|choice)\s*", "", s.strip(), flags=re.IGNORECASE)
    t = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", t).strip()
    m = re.fullmatch(r"\(([A-Ea-e])\)(?:\s.*)?", t, re.DOTALL) or re.fullmatch(
        r"([A-E])(?:[).:](?:\s.*)?)?", t, re.DOTALL
    )
    return m.group(1).upper() if m else None


_TEXT = re.compile(r"[A-Za-z][A-Za-z'\- ,.]*")


def text_key(s: str) -> str | None:
    """Lower-cased words when the answer is plain text ("Monday", "\\text{no solution}")."""
    t = s.strip()
    t = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", t).strip()
    if not _TEXT.fullmatch(t) or not re.search(r"[A-Za-z]{2,}", t):
        return None
    words = re.findall(r"[a-z0-9']+", t.lower())
    words = [w for w in words if w not in {"the", "a", "an"}] or words
    return " ".join(words)
