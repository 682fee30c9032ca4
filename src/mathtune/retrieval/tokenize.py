r"""A LaTeX-aware tokenizer for BM25 retrieval over math text.

    from mathtune.retrieval.tokenize import tokenize
    tokenize(r"Find $\dfrac{x^2}{2}$ and \binom{5}{2} choices")
    # ['find', '\\frac', 'x', '^', '2', '2', '\\binom', '5', '2', 'choice']

Word tokenizers (bm25s' default, scikit-learn's) drop backslashes and operators, so `\frac`,
`\binom`, `x^2` and `5!` vanish, while for math they are the most telling tokens. Here:
  * LaTeX commands stay whole (`\frac`, `\sqrt`, `\int`, `\pi`), with variants merged
    (`\dfrac`/`\tfrac` -> `\frac`, `\le` -> `\leq`, `\cdot` -> `\times`);
  * the operators `^ ! % _ = + * / < >`, the prime `'` (f'(x)) and `√ π` are tokens of their own;
  * words are lowercased, a short English stop list is dropped, and a plural `s` is cut
    (`roots` -> `root`, `divisors` -> `divisor`), so problem and card wording meet;
  * numbers are kept (exemplar retrieval matches them; `numbers=False` drops them), and a
    decimal such as 3.89 also yields the token `decimal`.
"""

from __future__ import annotations

import re

TOKEN = re.compile(r"\\[A-Za-z]+|[A-Za-z]+|\d+\.\d+|\d+|[\^!%_=+*/<>'√π]")


def words_only(text: str) -> list[str]:
    """`tokenize` without numerals."""
    return tokenize(text, numbers=False)

ALIASES = {
    "\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\cfrac": "\\frac", "\\over": "\\frac",
    "\\le": "\\leq", "\\leqslant": "\\leq", "\\ge": "\\geq", "\\geqslant": "\\geq",
    "\\cdot": "\\times", "\\ast": "*", "\\choose": "\\binom", "\\dbinom": "\\binom", "\\tbinom": "\\binom",
    "\\ne": "\\neq", "\\lvert": "|", "\\rvert": "|", "√": "\\sqrt", "π": "\\pi",
}

# Layout commands carry no meaning for retrieval.
DROP_COMMANDS = frozenset({"\\left", "\\right", "\\text", "\\mathrm", "\\displaystyle", "\\quad", "\\qquad",
                           "\\mbox", "\\textbf", "\\mathbf", "\\begin", "\\end", "\\boxed"})

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "let", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "which", "who", "will", "with", "you", "your", "do", "does", "did", "can"]
)


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str, numbers: bool = True) -> list[str]:
    """The retrieval tokens of `text` (LaTeX commands and operators kept, see the module doc);
    `numbers=False` drops numerals (formula cards: a problem's numbers say nothing about which
    formula it needs)."""
    out: list[str] = []
    for tok in TOKEN.findall(text):
        if tok[0] == "\\":
            tok = ALIASES.get(tok, tok)
            if tok not in DROP_COMMANDS:
                out.append(tok)
        elif tok[0].isalpha():
            word = tok.lower()
            if word not in STOPWORDS:
                out.append(_stem(word))
        elif tok[0].isdigit():
            if "." in tok:  # a decimal: the marker, then its digit groups
                out.append("decimal")
            if numbers:
                out.extend(tok.split("."))
        else:
            out.append(ALIASES.get(tok, tok))
    return out
