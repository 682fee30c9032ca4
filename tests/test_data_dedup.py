"""Dedup and decontamination mechanics: normalisation, exact/near duplicates, each contamination
rule on its own (exact, n-gram share and coverage, MinHash paraphrase)."""

from __future__ import annotations

from mathtune.data.dedup import (
    Decontaminator,
    MinHasher,
    exact_dedup,
    jaccard,
    near_dedup,
    normalize,
    shingles,
    tokens,
)
from mathtune.data.schema import Example

LONG = ("A farmer plants 24 rows of corn with 15 plants in each row and then buys 36 more plants "
        "from the market before the rain starts on Friday morning while his two sons carry water "
        "from the well to the field and count the plants again to see how many there are in total "
        "when the sun finally sets over the hills behind the old red barn near the river")


def ex(i: int, text: str, source: str = "s") -> Example:
    return Example(id=f"e{i}", problem=text, solution="", answer="1", source=source)


def test_normalize_keeps_operators_and_drops_latex_noise():
    assert normalize("What is $41 - 18$?") != normalize("What is $41 + 18$?")
    assert normalize("What is $3 \\times 4$?") == normalize("what is 3 * 4 ?")
    assert normalize("  Compute   $\\frac{1}{2}$ ") == "compute frac 1 2"


def test_minhash_signature_estimates_jaccard():
    h = MinHasher(128)
    a, b, c = shingles(tokens(LONG)), shingles(tokens(LONG.replace("corn", "wheat"))), shingles(tokens("unrelated text about cats"))
    sa, sb, sc = h.signatures([a, b, c])
    true = len(set(a) & set(b)) / len(set(a) | set(b))
    assert abs(jaccard(sa, sb) - true) < 0.12 and jaccard(sa, sc) < 0.1
    assert (MinHasher(128).signatures([a]) == sa).all()  # deterministic across instances


def test_exact_and_near_dedup_report_what_they_dropped():
    exs = [ex(0, LONG), ex(1, "  " + LONG.upper() + " "), ex(2, LONG.replace("Friday", "Monday")), ex(3, "What is 2 + 2?")]
    kept, drops = exact_dedup(exs)
    assert [e.id for e in kept] == ["e0", "e2", "e3"] and drops[0].matched == "e0"
    kept, near = near_dedup(kept, threshold=0.8)
    assert [e.id for e in kept] == ["e0", "e3"] and near[0].id == "e2" and near[0].score >= 0.8
    # templated synthetic problems are exempt from near-dedup (they differ only in numbers)
    syn = [ex(0, LONG, "synth"), ex(1, LONG.replace("24", "25"), "synth")]
    assert len(near_dedup(syn, 0.8, skip_sources=("synth",))[0]) == 2


def test_each_contamination_rule():
    bench = "Janet has 16 ducks that lay eggs every single day of the week at the farm near the lake."
    dc = Decontaminator({"gsm8k": [bench, LONG]})
    assert dc.match(bench.upper())[:2] == ("exact", "gsm8k:0")
    wrapped = "Answer the following question carefully and show all steps. " + bench + " Explain."
    reason, ref, score = dc.match(wrapped)
    assert (reason, ref) == ("ngram", "gsm8k:0") and score >= 0.5  # the test problem is embedded
    words = LONG.split()
    spread = " ".join(w + "s" if i % 20 == 10 else w for i, w in enumerate(words))  # sparse edits
    only_minhash = Decontaminator({"gsm8k": [bench, LONG]}, ngram_overlap=1.0)
    assert only_minhash.match(spread)[:2] == ("minhash", "gsm8k:1")
    assert dc.match("A train leaves the station at 3 pm travelling 60 miles per hour east.") is None
    kept, drops = dc.filter([ex(0, bench), ex(1, "Completely different question about 7 cats.")])
    assert [e.id for e in kept] == ["e1"] and drops[0].reason == "exact"


def test_lsh_band_choice_needs_neither_numpy_trapezoid_nor_trapz(monkeypatch):
    """numpy 2 has only `trapezoid`, numpy 1 only `trapz`; pyproject allows both, so the band
    choice must work with neither (the reference below uses whichever this numpy has)."""
    import numpy as np

    from mathtune.data import dedup

    integrate = getattr(np, "trapezoid", None) or np.trapz
    xs = np.linspace(0, 1, 201)

    def reference(threshold: float, num_perm: int) -> tuple[int, int]:
        def err(b: int, r: int) -> float:
            p = 1 - (1 - xs**r) ** b
            lo, hi = xs <= threshold, xs >= threshold
            return integrate(p[lo], xs[lo]) + integrate(1 - p[hi], xs[hi])

        return min(((b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)), key=lambda br: err(*br))

    expected = {(t, n): reference(t, n) for t, n in [(0.6, 64), (0.85, 64), (0.5, 32)]}
    monkeypatch.delattr(np, "trapezoid", raising=False)
    monkeypatch.delattr(np, "trapz", raising=False)
    dedup._band_params.cache_clear()
    try:
        assert {k: dedup._band_params(*k) for k in expected} == expected
        near = dedup.near_dedup([ex(0, LONG), ex(1, LONG + " again"), ex(2, "What is 2 + 2?")], 0.85)
        assert [e.id for e in near[0]] == ["e0", "e2"]
    finally:
        dedup._band_params.cache_clear()
