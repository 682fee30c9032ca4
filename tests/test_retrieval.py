"""Retrieval (#13 part 3): the LaTeX-aware tokenizer, formula cards (shipped and the user's),
recall@3 of the needed card on synthetic "formula needed" problems whose card is known by
construction, query latency over 10,000 exemplars, a problem never retrieving itself, exemplar
decontamination, and `mathtune eval --retrieve cards|exemplars` end to end with a fake generator.

Run:  .venv/bin/python -m pytest tests/test_retrieval.py -q
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mathtune.data import Example, synth
from mathtune.errors import MathtuneError
from mathtune.generation.base import Completion
from mathtune.prompts import FACTS_HEADER
from mathtune.retrieval import CardStore, ExemplarStore, read_cards, tokenize
from mathtune.retrieval.cards import shipped_card_files
from mathtune.retrieval.formula_set import RULES, formula_needed_set


@pytest.fixture(scope="module")
def cards() -> CardStore:
    return CardStore.load()


def test_tokenizer_keeps_latex_commands_and_operators():
    toks = tokenize(r"Find $\dfrac{x^2}{2}$, $\binom{5}{2}$, $5!$ and $\sqrt{2} \cdot \pi$; f''(1) at 3.5 roots")
    assert toks[:4] == ["find", "\\frac", "x", "^"]  # \dfrac merged into \frac
    for t in ("\\binom", "!", "\\sqrt", "\\times", "\\pi", "'", "decimal", "root"):
        assert t in toks, t
    assert "$" not in "".join(toks) and "{" not in "".join(toks)
    assert "5" not in tokenize("5 choose 2", numbers=False) and "5" in tokenize("5 choose 2")


def test_shipped_cards_cover_every_labelled_card_and_each_synthetic_topic(cards):
    assert {c for _, _, c in RULES} <= {c.id for c in cards.cards}
    topics = {c.topic for c in cards.cards}
    assert {"arithmetic", "algebra", "calculus", "combinatorics", "probability", "statistics", "geometry",
            "number_theory"} <= topics
    files = {p.stem for p in shipped_card_files()}
    assert {"arithmetic", "algebra", "calculus", "counting", "geometry", "number_theory"} <= files
    assert all("\\" in c.statement or "$" in c.statement for c in cards.cards)  # statements are LaTeX


def test_recall_at_3_of_the_needed_card(cards):
    labelled = formula_needed_set(800, seed=11)
    assert len(labelled) >= 700 and len({c for _, c in labelled}) == len({c for _, _, c in RULES})
    hits = [c in [x.id for x in cards.search(e.problem, 3)] for e, c in labelled]
    recall = sum(hits) / len(hits)
    print(f"recall@3 = {recall:.3f} on {len(hits)} problems")
    assert recall >= 0.9


def test_user_cards_extend_and_override(tmp_path, cards):
    y = tmp_path / "mine.yaml"
    y.write_text('- id: stars-and-bars\n  title: Stars and bars\n  topic: combinatorics\n'
                 '  statement: "$\\\\binom{n + k - 1}{k - 1}$ ways"\n'
                 '  when: "distribute n identical balls into k distinct boxes"\n'
                 '- id: circle\n  title: My circle\n  statement: "$A = \\\\pi r^2$"\n')
    j = tmp_path / "more.jsonl"
    j.write_text(json.dumps({"id": "am-gm", "title": "AM-GM", "statement": r"$\frac{a+b}{2} \geq \sqrt{ab}$",
                             "when": "minimum of a sum of positive terms, inequality"}) + "\n")
    store = CardStore.load([y, j])
    assert len(store) == len(cards) + 2  # circle replaced, two new
    assert store["circle"].title == "My circle"
    assert store.search("How many ways to distribute 7 identical balls into 3 distinct boxes?", 1)[0].id == "stars-and-bars"
    assert store.search(r"Find the minimum of $x + \frac{1}{x}$ for positive x (inequality)", 1)[0].id == "am-gm"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  title: no statement\n")
    with pytest.raises(MathtuneError, match=r"bad.yaml, card 1: card 'x': missing statement"):
        read_cards(bad)


# ------------------------------------------------------------------------------ exemplars


@pytest.fixture(scope="module")
def big_store() -> tuple[ExemplarStore, list[Example]]:
    examples = synth.generate(10_000, seed=5)
    return ExemplarStore(examples), examples


def test_query_latency_over_10000_exemplars(big_store):
    store, _ = big_store
    assert len(store) == 10_000
    queries = [e.problem for e in synth.generate(200, seed=99)]
    store.search(queries[0], 3)  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search(q, 3)
        times.append(time.perf_counter() - t0)
        assert len(hits) == 3
    times.sort()
    median_ms, mean_ms = times[len(times) // 2] * 1e3, sum(times) / len(times) * 1e3
    print(f"median {median_ms:.3f} ms, mean {mean_ms:.3f} ms per query over 10,000 exemplars")
    # the target is 5 ms; the bound on the mean is generous because this machine is shared
    assert median_ms <= 5.0 and mean_ms <= 20.0


def test_a_test_item_never_retrieves_itself(big_store):
    store, examples = big_store
    items = examples[::97]  # ~100 items that are in the store
    for e in items:
        plain = [h.id for h in store.search(e.problem, 5)]
        assert e.id not in plain and all(h.problem != e.problem for h in store.search(e.problem, 5))
        # the same item with other spacing and LaTeX dollars is still itself
        assert e.id not in [h.id for h in store.search(f"  ${e.problem}$ ", 5)]
        # and a query that only shares the id is masked by id
        assert e.id not in [h.id for h in store.search(e.problem + " (variant)", 5, exclude_ids={e.id})]
    # without the guard the item would have been the top hit: the test can fail
    top = store.index.search(items[0].problem, 1)[0][0]
    assert store.examples[top].id == items[0].id


def test_decontamination_drops_benchmark_items_and_near_copies():
    train = synth.generate(300, seed=1)
    tests = synth.generate(20, seed=2, exclude=[e.problem for e in train])
    planted = [Example(id=f"copy-{i}", problem=t.problem, solution=t.solution, answer=t.answer, source="leak")
               for i, t in enumerate(tests[:10])]
    para = [Example(id=f"para-{i}", problem="Here is a question. " + t.problem + " Show your work.",
                    solution=t.solution, answer=t.answer, source="leak") for i, t in enumerate(tests[10:15])]
    store = ExemplarStore(train + planted + para)
    clean, drops = store.decontaminate({"toy": [t.problem for t in tests]})
    kept_ids = {e.id for e in clean.examples}
    assert not any(i.startswith(("copy-", "para-")) for i in kept_ids)
    assert {d.id for d in drops} >= {e.id for e in planted + para}
    assert len(clean) >= len(train) - 30  # unrelated training problems stay
    for t in tests:  # no test problem retrieves a copy of itself or of another test item
        assert all(not h.id.startswith(("copy-", "para-")) for h in clean.search(t.problem, 5))


# ------------------------------------------------------------------------------ eval wiring


class EchoGenerator:
    """Answers every prompt with a fixed boxed answer; records the prompts it saw."""

    tokenizer = None

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts, params, *, on_complete=None, seeds=None):
        self.prompts += prompts
        out = []
        for i, _ in enumerate(prompts):
            c = Completion(text="The answer is \\boxed{4}.", tokens=5, finish_reason="stop", time_s=0.0)
            if on_complete:
                on_complete(i, 0, c)
            out.append([c])
        return out

    def close(self) -> None:
        pass


@pytest.fixture()
def bench(tmp_path) -> Path:
    tests = synth.generate(6, families=["combinatorics", "quadratics"], seed=21)
    path = tmp_path / "toy" / "test.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"question": e.problem, "answer": e.answer}) + "\n" for e in tests))
    return path


def _cfg(bench: Path, out: Path, **kw):
    from mathtune.eval.run import EvalConfig

    return EvalConfig(**({"model": "fake", "benchmark": str(bench), "fields": "problem=question,answer=answer",
                          "prompt": "cot", "output": str(out), "grade_workers": 1} | kw))


def test_eval_retrieve_cards_puts_cards_in_the_prompt(bench, tmp_path):
    from mathtune.eval.run import run_eval

    gen = EchoGenerator()
    res = run_eval(_cfg(bench, tmp_path / "run", retrieve="cards", retrieve_k=2), progress=False, generator=gen)
    assert len(gen.prompts) == 6 and all(FACTS_HEADER in p for p in gen.prompts)
    for r in res.records:
        assert len(r["retrieved"]) == 2 and FACTS_HEADER in r["prompt"]
    assert any("\\binom" in p for p in gen.prompts)  # combinatorics problems got the combinations card
    assert json.loads((res.run_dir / "retrieval.json").read_text())["mode"] == "cards"


def test_eval_retrieve_exemplars_is_decontaminated(bench, tmp_path):
    from mathtune.eval.run import run_eval

    tests = [json.loads(line)["question"] for line in bench.read_text().splitlines()]
    train = synth.generate(200, families=["combinatorics", "quadratics"], seed=22, exclude=tests)
    leaks = [{"id": f"leak-{i}", "problem": q, "solution": "copied", "answer": "0", "source": "leak"}
             for i, q in enumerate(tests)]
    rows = [{"id": e.id, "problem": e.problem, "solution": e.solution, "answer": e.answer, "source": "synth"}
            for e in train] + leaks
    ex_file = tmp_path / "solved.jsonl"
    ex_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = EchoGenerator()
    res = run_eval(_cfg(bench, tmp_path / "run", retrieve="exemplars", exemplars=str(ex_file)),
                   progress=False, generator=gen)
    info = json.loads((res.run_dir / "retrieval.json").read_text())
    assert info["dropped"] >= len(leaks) and info["decontaminated_against"] == {"toy": 6}
    for r, prompt in zip(res.records, gen.prompts, strict=True):
        assert len(r["retrieved"]) == 3 and not any(i.startswith("leak-") for i in r["retrieved"])
        assert prompt.count("Question:") == 4 and prompt.count(r["problem"].strip()) == 1  # 3 shots + itself


def test_cards_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["mathtune"]
    assert "bm25s" in " ".join(data["project"]["dependencies"])
    pkg = Path(__file__).resolve().parents[1] / "src" / "mathtune"
    shipped = {p for g in globs for p in pkg.glob(g)}
    assert set(shipped_card_files()) <= shipped and shipped_card_files()


def test_cards_from_a_latex_corpus(tmp_path, cards):
    tex = tmp_path / "notes.tex"
    tex.write_text("\\section{Counting}\nTo count monotone lattice paths on a grid from corner to corner, use this.\n\n"
                   "\\begin{theorem}[Lattice paths]\\label{thm:paths}\n"
                   "The number of monotone paths from $(0,0)$ to $(m,n)$ is $\\binom{m+n}{m}$.\n\\end{theorem}\n\n"
                   "\\begin{lemma}\n$a^2 \\geq 0$ for real $a$.\n\\end{lemma}\n")
    found = read_cards(tex)
    assert [c.id for c in found] == ["notes:lattice-paths", "notes:lemma-2"]
    paths = found[0]
    assert paths.statement.startswith("The number of monotone paths") and "\\label" not in paths.statement
    assert paths.when.startswith("To count monotone lattice paths") and found[1].when == ""
    store = CardStore.load([tex])
    assert len(store) == len(cards) + 2
    hits = store.search("How many monotone lattice paths go from (0,0) to (4,3) on a grid?", 1)
    assert hits[0].id == "notes:lattice-paths"
