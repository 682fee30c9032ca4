"""LaTeX source cleaning for continued-pretraining corpora.

`clean_latex(source)`:
  1. removes comments (unescaped `%` to end of line; whole-line comments vanish with their
     newline) and `comment` environments;
  2. collects `\\newcommand` / `\\renewcommand` / `\\providecommand` (with optional argument
     counts and a default first argument), `\\def\\name#1#2{...}` and `\\DeclareMathOperator`
     definitions from the whole file, then keeps only the document body (between
     `\\begin{document}` and `\\end{document}`, when present);
  3. deletes the definitions from the body and expands the macros where they are used
     (nested macros too, up to a fixed depth);
  4. drops figure/table environments unless `keep_floats=True`;
  5. collapses runs of blank lines.
Mathematics is otherwise left byte-for-byte as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FLOAT_ENVS = ("figure", "figure*", "table", "table*", "wrapfigure", "wraptable", "sidewaysfigure", "sidewaystable")
MAX_DEPTH = 10


@dataclass(frozen=True)
class Macro:
    nargs: int
    body: str
    default: str | None = None  # default for an optional first argument


def strip_comments(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        cut = _comment_start(line)
        if cut is None:
            out.append(line)
        elif line[:cut].strip() == "":
            continue  # a whole-line comment disappears with its newline
        else:
            out.append(line[:cut].rstrip(" \t") + ("\n" if line.endswith("\n") else ""))
    text = "".join(out)
    return re.sub(r"\\begin\{comment\}.*?\\end\{comment\}\n?", "", text, flags=re.S)


def _comment_start(line: str) -> int | None:
    i = line.find("%")
    while i != -1:
        slashes = 0
        j = i - 1
        while j >= 0 and line[j] == "\\":
            slashes += 1
            j -= 1
        if slashes % 2 == 0:
            return i
        i = line.find("%", i + 1)
    return None


def _group(text: str, i: int) -> tuple[str, int] | None:
    """The balanced `{...}` group starting at text[i] (after spaces): (content, end index)."""
    while i < len(text) and text[i] in " \t\n":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2  # skip the escaped character (\{, \}, \\)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None


def _bracket(text: str, i: int) -> tuple[str, int] | None:
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "[":
        j = text.find("]", i)
        if j != -1:
            return text[i + 1 : j], j + 1
    return None


DEF_RE = re.compile(r"\\(?:(?:renew|provide|new)command\*?|DeclareMathOperator\*?|def)(?![a-zA-Z])")


def extract_macros(text: str) -> tuple[dict[str, Macro], str]:
    """All macro definitions in `text`, and the text with the definitions removed."""
    macros: dict[str, Macro] = {}
    out, pos = [], 0
    for m in DEF_RE.finditer(text):
        if m.start() < pos:
            continue
        parsed = _parse_def(text, m)
        if parsed is None:
            continue
        name, macro, end = parsed
        macros[name] = macro
        out.append(text[pos : m.start()])
        pos = end
        if text[pos : pos + 1] == "\n" and (not out[-1] or out[-1].endswith("\n")):
            pos += 1  # a definition on its own line leaves no blank line behind
    out.append(text[pos:])
    return macros, "".join(out)


def _parse_def(text: str, m: re.Match) -> tuple[str, Macro, int] | None:
    kind, i = m.group(0), m.end()
    if kind == "\\def":
        nm = re.match(r"\s*\\([a-zA-Z]+|.)((?:#\d)*)\s*", text[i:])
        if not nm:
            return None
        grp = _group(text, i + nm.end())
        if grp is None:
            return None
        return nm.group(1), Macro(len(nm.group(2)) // 2, grp[0]), grp[1]
    grp = _group(text, i)
    if grp is not None:
        name, i = grp[0].strip(), grp[1]
    else:
        nm = re.match(r"\s*(\\[a-zA-Z]+)", text[i:])
        if not nm:
            return None
        name, i = nm.group(1), i + nm.end()
    if not name.startswith("\\"):
        return None
    if kind.startswith("\\DeclareMathOperator"):
        body = _group(text, i)
        if body is None:
            return None
        return name[1:], Macro(0, f"\\operatorname{{{body[0]}}}"), body[1]
    nargs, default = 0, None
    b = _bracket(text, i)
    if b is not None:
        nargs, i = int(b[0].strip() or 0), b[1]
        d = _bracket(text, i)
        if d is not None:
            default, i = d[0], d[1]
    body = _group(text, i)
    if body is None:
        return None
    return name[1:], Macro(nargs, body[0], default), body[1]


def expand_macros(text: str, macros: dict[str, Macro]) -> str:
    if not macros:
        return text
    names = sorted(macros, key=len, reverse=True)
    pattern = re.compile(r"\\(" + "|".join(re.escape(n) for n in names) + r")(?![a-zA-Z])")
    for _ in range(MAX_DEPTH):
        new = _expand_once(text, macros, pattern)
        if new == text:
            break
        text = new
    return text


def _expand_once(text: str, macros: dict[str, Macro], pattern: re.Pattern) -> str:
    out, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() < pos or (m.start() > 0 and _escaped(text, m.start())):
            continue
        macro = macros[m.group(1)]
        i, args = m.end(), []
        if macro.default is not None:
            b = _bracket(text, i)
            args.append(b[0] if b else macro.default)
            i = b[1] if b else i
        while len(args) < macro.nargs:
            grp = _group(text, i)
            if grp is not None:
                args.append(grp[0])
                i = grp[1]
            else:  # an unbraced argument is a single token
                tok = re.match(r"\s*(\\[a-zA-Z]+|\S)", text[i:])
                if not tok:
                    break
                args.append(tok.group(1))
                i += tok.end()
        if len(args) < macro.nargs:
            continue
        if macro.nargs == 0 and text[i : i + 2] == "{}":
            i += 2  # `\ours{}` is the usual way to keep the space after a text macro
        body = macro.body
        for k, a in enumerate(args, start=1):
            body = body.replace(f"#{k}", a)
        out.append(text[pos : m.start()])
        out.append(body)
        pos = i
    out.append(text[pos:])
    return "".join(out)


def _escaped(text: str, i: int) -> bool:
    """True when the backslash at text[i] is itself escaped (`\\\\name`)."""
    slashes, j = 0, i - 1
    while j >= 0 and text[j] == "\\":
        slashes += 1
        j -= 1
    return slashes % 2 == 1


def body_of(text: str) -> str:
    m = re.search(r"\\begin\{document\}", text)
    if not m:
        return text
    end = text.find("\\end{document}", m.end())
    return text[m.end() : end if end != -1 else len(text)]


def drop_floats(text: str) -> str:
    for env in FLOAT_ENVS:
        e = re.escape(env)
        text = re.sub(rf"\\begin\{{{e}\}}.*?\\end\{{{e}\}}[ \t]*\n?", "", text, flags=re.S)
    return text


def clean_latex(source: str, keep_floats: bool = False) -> str:
    text = strip_comments(source)
    macros, text = extract_macros(text)
    text = body_of(text)
    if not keep_floats:
        text = drop_floats(text)
    text = expand_macros(text, macros)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"
