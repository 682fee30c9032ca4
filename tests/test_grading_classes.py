"""Grader tests by failure class (issue 15): our own cases, one group per class.

    .venv/bin/python -m pytest tests/test_grading_classes.py -q

Each row is (gold, response, expected). The numbers and phrasings are our own; the classes are
the ones the foreign suites exposed: prose answers with no marker, several answers, labelled
golds, matrices, notation, zero-denominator false positives, and slow radicals; then the
classes the differential corpus exposed: cut-off responses, enumeration markers, trivial
powers, [asy] figures, equations with swapped sides, and lists of math spans.
"""

from __future__ import annotations

import time

import pytest

from mathtune.grading import grade_many

# 1. Answers in prose, with no box or marker: the last mathematical object, taken whole.
PROSE = [
    ("(-\\infty, 5)", "Solving the inequality leaves $y < 5$.", True),
    ("x \\le -2", "So we need $x \\leq -2$.", True),
    ("x < 5", "Putting it together, $x \\lt 4$.", False),
    ("(4,-1)", "The two lines meet at the point $(4, -1)$.", True),
    ("(4,-1)", "The two lines meet at the point $(4, 1)$.", False),
    ("\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}", "Multiplying out, we get $\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}$.", True),
    ("\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}", "Multiplying out, we get $\\begin{pmatrix} 2 & 0 \\\\ 1 & 4 \\end{pmatrix}$.", False),
    ("14", "Answer $ 14 $", True),
    ("14", "Answer: $ 15 $", False),
    ("0.75", "**Answer** $\\frac{3}{4}$", True),
    ("27", "Final Answer: The smallest positive integer $k$ is 27.", True),
    ("27", "Final Answer: The smallest positive integer $k$ is 28.", False),
    ("42", "Final answer: the total cost is $\\$42$.", True),
    ("x \\le 7", "the answer is x <= 7", True),
    ("x \\le 7", "the answer is x >= 7", False),
    ("(-\\infty, 7]", "so x <= 7", True),
    ("8316", "For the first part we find $\\boxed{12}$. Adding all the parts, the final answer is $8,316$.", True),
    ("5", "One root is $\\boxed{3}$, which we discard.\nFinal Answer: The final answer is $5$. I hope it is correct.", True),
    ("3504.25", "That gives 14 boxes, which is 3,504.25 dollars in total.", True),
    ("14", "That gives 14 boxes, which is 3,504.25 dollars in total.", False),
    ("-3", "Substituting back, we see that $m = -3$ works.", True),
    ("\\frac{7}{2}", "Hence the length is $\\frac{7}{2}$ units.", True),
    ("(2, \\infty)", "We conclude that $t > 2$.", True),
    ("(0, 5]", "The valid values satisfy $0 < a \\leq 5$.", True),
    ("(5, 12)", "The coordinates of P are (5, 12).", True),
    ("81", "Answer: 81 apples", True),
    ("13", "Final answer: There are $13$ ways.", True),
    ("x \\ge 4", "so we need x > 4.", False),
    ("66", "So the total is 6 boxes which is 66 cookies.", True),
    ("12", "She has 12 + 3 = 15 now, and the answer is 12", True),
    # a number inside an exponent, or an answer followed by a long loop of words, is no answer
    ("8", "The zeros of $x^{12} + ax^8 + bx^4 + c$ are found from the polynomial $x^{12} + ax^8", False),
    ("16", "We need $|(1-i)^8|$ by taking " + "the logarithm of " * 40, False),
]

# 2. Several answers: every box of a multi-part answer counts, in responses and in golds.
SEVERAL = [
    ("-4, 6", "$\\boxed{-4} \\quad \\text{or} \\quad \\boxed{6}$", True),
    ("-4, 6", "$\\boxed{-4} \\quad \\text{or} \\quad \\boxed{5}$", False),
    ("2, 9", "The solutions are \\(\\boxed{2}\\) and \\(\\boxed{9}\\).", True),
    ("2", "The solutions are \\(\\boxed{2}\\) and \\(\\boxed{9}\\).", False),
    ("(3,-1)", "So $x=\\boxed{3}$ and $y=\\boxed{-1}$.", True),
    ("\\boxed{5} \\text{ and } \\boxed{8}", "\\boxed{5, 8}", True),
    ("\\boxed{5} \\text{ and } \\boxed{8}", "\\boxed{5}", False),
    ("$\\boxed{1}$ or $\\boxed{-7}$", "The roots are x = -7 or x = 1.", True),
    ("11, 13", "For part (a) the value is \\boxed{11}, and for part (b) it is \\boxed{13}.", True),
    ("6", "First I tried \\boxed{4}, but that fails the check. The answer is \\boxed{6}.", True),
    ("4", "First I tried \\boxed{4}, but that fails the check. The answer is \\boxed{6}.", False),
    ("\\frac{1}{2}, 3", "$\\boxed{\\frac12}\\ \\text{and}\\ \\boxed{3}$", True),
    ("3, 7", "$x_1 = \\boxed{3}$, $x_2 = \\boxed{7}$", True),
    ("(-1, 2)", "\\(x = \\boxed{-1}\\) and \\(y = \\boxed{2}\\)", True),
    ("\\boxed{2} \\quad \\boxed{5}", "The answers are 2 and 5.", True),
    ("3, 7", "We find the first root is \\boxed{3}; checking the second case gives \\boxed{7}.", True),
    ("3, 7", "We find the first root is \\boxed{3}; checking the second case gives \\boxed{8}.", False),
]

# 3. Labelled golds against bare values (and the other way round).
LABELLED = [
    ("(a,b)=(5,-2)", "\\boxed{(5,-2)}", True),
    ("(a,b)=(5,-2)", "\\boxed{(-2,5)}", False),
    ("EF=7, GH=9", "\\boxed{7, 9}", True),
    ("EF=7, GH=9", "\\boxed{7, 10}", False),
    ("P_1:P_2=3:8", "\\boxed{3:8}", True),
    ("P_1:P_2=3:8", "\\boxed{8:3}", False),
    ("|CD|=6", "The length is $\\boxed{6}$.", True),
    ("|CD|=6", "The length is $\\boxed{5}$.", False),
    ("\\frac{AE}{EC}=\\frac{2}{\\sqrt{5}}", "\\boxed{\\frac{2\\sqrt{5}}{5}}", True),
    ("\\frac{AE}{EC}=\\frac{2}{\\sqrt{5}}", "\\boxed{\\frac{\\sqrt{5}}{2}}", False),
    ("\\angle ABC = 40^\\circ", "\\boxed{40}", True),
    ("(3,2)", "We find $(p, q) = (3, 2)$.", True),
    ("m+n=12", "\\boxed{12}", True),
    ("(x,y)=(1,-4)", "\\boxed{x=1, y=-4}", True),
    ("BC=10, AC=8", "\\boxed{BC = 10, AC = 8}", True),
    ("BC=10, AC=8", "\\boxed{8, 10}", False),
    ("A:B = 5:7", "\\boxed{\\frac{5}{7}}", True),
    ("a_{10} = 512", "\\boxed{512}", True),
    ("f^{-1}(x) = \\frac{x-3}{2}", "\\boxed{\\frac{x-3}{2}}", True),
]

# 4. Matrices in every environment; identical matrices always match.
MATRICES = [
    ("\\begin{bmatrix} 1 & -1 \\\\ 0 & 2 \\end{bmatrix}", "\\boxed{\\begin{bmatrix} 1 & -1 \\\\ 0 & 2 \\end{bmatrix}}", True),
    ("\\begin{pmatrix} 1 & -1 \\\\ 0 & 2 \\end{pmatrix}", "\\boxed{\\begin{bmatrix} 1 & -1 \\\\ 0 & 2 \\end{bmatrix}}", True),
    ("\\begin{pmatrix} 1 & -1 \\\\ 0 & 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix} 1 & 1 \\\\ 0 & 2 \\end{pmatrix}}", False),
    ("\\left[\\begin{array}{cc} 3 & 1 \\\\ 2 & 5 \\end{array}\\right]", "$\\boxed{\\begin{pmatrix} 3 & 1 \\\\ 2 & 5 \\end{pmatrix}}$", True),
    ("\\left[\\begin{array}{cc} 3 & 1 \\\\ 2 & 5 \\end{array}\\right]", "$\\boxed{\\left[\\begin{array}{cc} 3 & 1 \\\\ 2 & 5 \\end{array}\\right]}$", True),
    ("\\begin{pmatrix} \\frac{1}{2} \\\\ -3 \\end{pmatrix}", "\\boxed{\\begin{pmatrix} 0.5 \\\\ -3 \\end{pmatrix}}", True),
    ("\\begin{pmatrix} 4 \\\\ 7 \\end{pmatrix}", "\\boxed{(4, 7)}", True),
    ("\\begin{pmatrix} 4 \\\\ 7 \\end{pmatrix}", "\\boxed{\\begin{pmatrix} 4 & 7 \\end{pmatrix}}", False),
    ("\\begin{pmatrix} 2 & 1 \\\\ 1 & 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix} 2 & 1 \\\\ 1 & 2 \\end{pmatrix}}", True),
    ("\\begin{vmatrix} a & b \\end{vmatrix}", "\\boxed{\\begin{vmatrix} a & b \\end{vmatrix}}", True),
    ("\\begin{pmatrix} 3 \\\\ -2 \\\\ 5 \\end{pmatrix}", "\\boxed{\\left[\\begin{array}{c} 3 \\\\ -2 \\\\ 5 \\end{array}\\right]}", True),
    ("\\begin{pmatrix} 0 & 1 \\\\ 1 & 0 \\end{pmatrix}", "The answer is: \\\\begin{pmatrix} 0 & 1 \\\\\\\\ 1 & 0 \\\\end{pmatrix}", True),
]

# 5. Notation: doubled backslashes, decimal commas, "\approx" tails, tuple sets, inequality vs
#    interval, stray backslashes.
NOTATION = [
    ("\\\\frac{2}{3}", "\\boxed{\\frac{2}{3}}", True),
    ("\\frac{5}{6}", "The answer is $\\\\frac{5}{6}$.", True),
    ("\\\\sqrt{7}", "\\boxed{\\sqrt{7}}", True),
    ("\\\\sqrt{7}", "\\boxed{\\sqrt{8}}", False),
    ("3,75", "\\boxed{3.75}", True),
    ("12.5", "The answer is 12,5", True),
    ("1500,25", "\\boxed{1500.25}", True),
    ("3,75", "\\boxed{3.76}", False),
    ("1,250", "\\boxed{1250}", True),
    ("\\frac{1}{2\\sqrt2}", "\\boxed{\\frac{\\sqrt{2}}{4} \\approx 0.354}", True),
    ("\\frac{1}{2\\sqrt2}", "\\boxed{\\frac{\\sqrt{2}}{3} \\approx 0.471}", False),
    ("(1,3),(3,1)", "\\boxed{(3,1); (1,3)}", True),
    ("(1,3),(3,1)", "\\boxed{(1,3) \\text{ or } (3,1)}", True),
    ("(1,3),(3,1)", "\\boxed{(1,3), (3,1), (1,3)}", True),
    ("(1,3),(3,1)", "\\boxed{(1,3), (3,2)}", False),
    ("-1 < g(x) < 4", "\\boxed{(-1, 4)}", True),
    ("(-1, 4)", "\\boxed{-1 < g(x) < 4}", True),
    ("1 \\le y \\le 9", "\\boxed{[1, 9]}", True),
    ("(-1, 4]", "\\boxed{-1 < g(x) < 4}", False),
    ("15", "The answer is $15\\$", True),
    ("\\frac{3}{5}", "\\boxed{\\frac{3}{5}\\\\}", True),
    ("7,25", "The answer is 7.35", False),
    ("2,3", "\\boxed{3, 2}", True),
    ("\\sqrt{2}", "\\boxed{\\sqrt{2} \\approx 1.414}", True),
    ("1.414", "\\boxed{\\sqrt{2} \\approx 1.414}", True),
    ("[-2, 2)", "\\boxed{-2 \\le y < 2}", True),
    ("(-\\infty, 1] \\cup [2, \\infty)", "\\boxed{x \\le 1 \\text{ or } x \\ge 2}", True),
    ("\\mathbb{R}", "\\boxed{(-\\infty, \\infty)}", True),
    ("\\frac{224\\sqrt{3}}{3}", "The answer is (224*sqrt(3))/3", True),
    ("25_{6}", "\\boxed{25_{7}}", False),
    ("1202_3", "\\boxed{1202_{3}}", True),
]

# 6. False positives: a zero denominator is not a wildcard; clock times are times.
FALSE_POSITIVES = [
    ("11:00", "\\boxed{2:00}", False),
    ("4:00", "The meeting starts at 5:00.", False),
    ("3:30", "\\boxed{3:30}", True),
    ("9:45", "\\boxed{9:45}", True),
    ("3/0", "\\boxed{5/0}", False),
    ("\\frac{2}{0}", "\\boxed{\\frac{7}{0}}", False),
    ("7:00", "\\boxed{10:00}", False),
    ("12:30", "\\boxed{1:30}", False),
    ("3:15 p.m.", "The train leaves at 15:15.", True),
    ("0/0", "\\boxed{1}", False),
]

# 7. Time: reordered and nested radicals settle well inside the timeout.
RADICALS = [
    ("\\sqrt{3+2\\sqrt{2}}", "\\boxed{1+\\sqrt{2}}", True),
    ("\\sqrt{5+2\\sqrt{6}}", "\\boxed{\\sqrt{3}+\\sqrt{2}}", True),
    ("\\frac{\\sqrt{6}-\\sqrt{2}}{4}", "\\boxed{\\frac{\\sqrt{2-\\sqrt{3}}}{2}}", True),
    ("\\sqrt{2}+\\sqrt{3}+\\sqrt{5}", "\\boxed{\\sqrt{5}+\\sqrt{3}+\\sqrt{2}}", True),
    ("\\sqrt{5+2\\sqrt{6}}", "\\boxed{\\sqrt{2}+\\sqrt{5}}", False),
    ("\\sqrt[3]{2+\\sqrt{5}}+\\sqrt[3]{2-\\sqrt{5}}", "\\boxed{1}", True),
    ("\\frac{1}{\\sqrt{2}+\\sqrt{3}}", "\\boxed{\\sqrt{3}-\\sqrt{2}}", True),
    ("\\sqrt{11-6\\sqrt2}", "\\boxed{3-\\sqrt2}", True),
    ("\\sqrt{11-6\\sqrt2}", "\\boxed{3+\\sqrt2}", False),
    ("\\sqrt{3}+\\sqrt{7}+\\sqrt{11}", "\\boxed{\\sqrt{11}+\\sqrt{7}+\\sqrt{3}}", True),
]

# 8. Cut-off responses (the length limit hit mid-computation) gave no final answer: the fallbacks
#    read nothing from a response that stops inside a formula, on a word or operator that cannot
#    end a sentence, or part-way through a line it repeats. Marked answers still count, and a
#    response that ends like a conclusion is still read.
CUT_OFF = [
    ("7", "Each crate holds 12 bottles.\nShe fills 3 crates, so 3 + 4 = 7", True),
    ("7", "We substitute the root:\n\\[ 2^2 + 3 \\cdot 1 = 7", False),
    ("12", "First we list the products: $$2^3 \\cdot 3 = 24$$ and then $$12 \\cdot 2^", False),
    ("48", "Adding both trips gives\n\\[\n 20 + 28 = 48 \\text{ km}\n\\]\nso the distance for the whole week is", False),
    ("48", "Adding both trips gives\n\\[\n 20 + 28 = 48 \\text{ km}\n\\]\nThat is the whole distance.", True),
    ("2", "Tom gave 6 cards, which means he gave 6 * 4 = 24 cards.\n"
     "Tom gave 6 cards, which means he gave 6 * 4 = 24 cards.\nTom gave 6 cards, which means he gave 6 * 4 = 2", False),
    ("9", "Let me compute. The answer is 9. Checking: 9 \\cdot 3 = 27 and then we add", True),
    ("6", "We check the value \\(", False),
    ("6", "Putting the pieces together, the value is 6.", True),
    ("45", "**Subtotal: 45**\nNext we multiply the", False),
    ("45", "Thus the subtotal is 45 \\cdot", False),
    ("45", "Thus the total is 45 pencils.", True),
]

# 9. Enumeration markers ("4. **Step**") and bases of powers ("5^") are not values.
MARKERS = [
    ("4", "Here is the plan:\n1. Read the problem.\n2. Set up the equation $x + 1 = 5$.\n4. **Solve for", False),
    ("4", "Here is the plan:\n3. Read the problem.\n4. Solve it", False),
    ("2", "The prime factors are $2^3$ and 3^2", False),
    ("9", "The prime factors are 2 and 9", True),
    ("3", "Steps:\n1. add\n2. subtract\nThe result is 3", True),
]

# 10. Powers decided without arithmetic are read before any size guard: 1^n, 0^n (n > 0), b^0.
TRIVIAL_POWERS = [
    ("1", "The final answer is $1^{(3^{98765432})}$.", True),
    ("2", "The final answer is $1^{(3^{98765432})}$.", False),
    ("0", "\\boxed{0^{7^{123456789}}}", True),
    ("1", "\\boxed{(y+2)^{0}}", True),
    ("-1", "\\boxed{-1^{(5^{99999999})}}", True),
    ("3", "\\boxed{2 + 7^{0}}", True),
    ("4", "\\boxed{2 + 7^{0}}", False),
]

# 11. [asy] figure code is not answer text: its numbers and tuples are never extracted.
FIGURES = [
    ("(2,5)", "The vertex is at $(2,5)$.[asy]\ndraw((0,0)--(4,0));\ndot((2,5)^^(3,7));\n[/asy]", True),
    ("(3,7)", "The vertex is at $(2,5)$.[asy]\ndraw((0,0)--(4,0));\ndot((2,5)^^(3,7));\n[/asy]", False),
    ("\\frac{3}{2}", "So the ratio is $\\boxed{\\frac32}$. [asy] size(4cm); label(\"$\\boxed{8}$\",(1,1)); [/asy]", True),
    ("11", "[asy]\nunitsize(1cm); draw((0,0)--(11,0));\n[/asy]\nThe side is 12 units.", False),
]

# 12. Equations compare as equations: swapped sides, or both sides scaled, are the same one.
EQUATIONS = [
    ("3x + 2y - z = 6", "The answer is $6 = 3x + 2y - z$.", True),
    ("3x + 2y - z = 6", "The answer is $6 = 3x + 2y + z$.", False),
    ("y = 2x - 9", "Therefore the line is $2x - 9 = y$.", True),
    ("2a - b = -13", "\\boxed{-13 = 2a - b}", True),
    ("2a - b = -13", "\\boxed{-26 = 4a - 2b}", True),
    ("2a - b = -13", "\\boxed{-13 = 2a + b}", False),
    ("35", "The cost is 7 \\cdot 5 = 35", True),
]

# 13. A list of math spans joined by "and" / commas after a marker is one answer.
SPAN_LISTS = [
    ("-2, 7", "The answer is $-2$ and $7$.", True),
    ("-2, 7", "The answer is $-2$ and $8$.", False),
    ("\\frac{1}{4}, \\frac{9}{4}", "So the answer is $\\frac{9}{4}$ and $\\frac{1}{4}$.", True),
    ("1, 3, 5", "The answer is $1$, $3$, and $5$.", True),
    ("1, 3, 5", "The answer is $1$, $3$, and $6$.", False),
    ("4", "The answer is $4$ and $9$.", False),
    ("4", "The answer is $4$ and $9$ is the other root of the quadratic.", True),
]

CLASSES = {
    "prose": PROSE,
    "several": SEVERAL,
    "labelled": LABELLED,
    "matrices": MATRICES,
    "notation": NOTATION,
    "false_positives": FALSE_POSITIVES,
    "radicals": RADICALS,
    "cut_off": CUT_OFF,
    "markers": MARKERS,
    "trivial_powers": TRIVIAL_POWERS,
    "figures": FIGURES,
    "equations": EQUATIONS,
    "span_lists": SPAN_LISTS,
}
ROWS = [(name, *row) for name, rows in CLASSES.items() for row in rows]


@pytest.fixture(scope="module")
def verdicts() -> list:
    t = time.monotonic()
    grades = grade_many([(r[2], r[1]) for r in ROWS], workers=2, timeout=5.0)
    assert time.monotonic() - t < 5.0 * len(ROWS)
    return grades


@pytest.mark.parametrize("i", range(len(ROWS)), ids=[f"{r[0]}:{r[2][:40]}" for r in ROWS])
def test_class_row(i: int, verdicts: list):
    _, gold, response, expected = ROWS[i]
    got = verdicts[i]
    assert got.correct is expected, f"gold={gold!r} response={response!r} -> {got}"
    assert got.status != "timeout"


def test_every_class_has_right_and_wrong_rows():
    for name, rows in CLASSES.items():
        assert any(r[2] for r in rows) and any(not r[2] for r in rows), name
