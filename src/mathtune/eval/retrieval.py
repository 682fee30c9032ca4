"""Retrieval for eval prompts (`retrieve: cards | exemplars`): one prompt per problem.

    from mathtune.eval.retrieval import retrieval_prompts
    prompts, extras = retrieval_prompts(cfg, spec, todo, style, tokenizer, shots, run_dir)

`cards`: the `retrieve_k` best formula cards (shipped + `cards:` files) are placed before the
problem (`PromptStyle.render(facts=...)`). `exemplars`: the `retrieve_k` most similar solved
examples become the few-shot pairs, after the fixed `fewshot` ones. The exemplar store is the
`exemplars:` dataset dir or file, else the benchmark's own train split; it is decontaminated
against the benchmark's whole test split (the data stage's `Decontaminator`), and each problem
is also masked by id and text, so a test item never retrieves itself. What was dropped is
written to `<run_dir>/retrieval.json`; each record keeps the ids it was shown (`retrieved`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import atomic_write_json
from .fewshot import clean_solution


def retrieval_prompts(cfg: Any, spec: Any, todo: list[Any], style: Any, tokenizer: Any,
                      shots: list[tuple[str, str]], run_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Prompts for `todo` with retrieved cards or exemplars, and per-problem record extras."""
    k = cfg.retrieve_k
    if cfg.retrieve == "cards":
        from ..retrieval import CardStore

        store = CardStore.load(cfg.cards or ())
        found = [store.search(p.problem, k) for p in todo]
        atomic_write_json(run_dir / "retrieval.json", {"mode": "cards", "k": k, "cards": len(store)})
        prompts = [style.render(p.problem, tokenizer, fewshot=shots, system=cfg.system, facts=[c.text() for c in cs])
                   for p, cs in zip(todo, found, strict=True)]
        return prompts, [{"retrieved": [c.id for c in cs]} for cs in found]
    store = _exemplar_store(cfg, spec, run_dir)
    prompts, extras = [], []
    for p in todo:
        hits = store.search(p.problem, k, exclude_ids={p.id})
        pairs = [(e.problem, style.completion(e.solution, e.answer or None)) for e in hits]
        prompts.append(style.render(p.problem, tokenizer, fewshot=[*shots, *pairs], system=cfg.system))
        extras.append({"retrieved": [e.id for e in hits]})
    return prompts, extras


def _exemplar_store(cfg: Any, spec: Any, run_dir: Path) -> Any:
    from ..benchmarks import load_problems
    from ..retrieval import ExemplarStore

    if cfg.exemplars:
        store, source = ExemplarStore.from_path(cfg.exemplars), cfg.exemplars
    else:
        store, source = ExemplarStore(_train_split(spec, cfg.data_dir)), f"{spec.name} train split"
    tests = {spec.name: [p.problem for p in load_problems(spec, cfg.data_dir)]}
    clean, drops = store.decontaminate(tests)
    if not len(clean):
        raise MathtuneError(f"no exemplars left to retrieve from {source} after decontamination "
                            f"against {spec.name} ({len(drops)} dropped)",
                            "pass --exemplars with a training split that does not copy the benchmark")
    atomic_write_json(run_dir / "retrieval.json", {
        "mode": "exemplars", "k": cfg.retrieve_k, "source": source, "exemplars": len(clean),
        "decontaminated_against": {spec.name: len(tests[spec.name])}, "dropped": len(drops),
        "dropped_by_reason": dict(Counter(d.reason for d in drops)),
    })
    return clean


def _train_split(spec: Any, data_dir: str | None) -> list[Any]:
    from ..benchmarks import load_problems
    from ..data import Example

    try:
        train = load_problems(spec, data_dir, split="train")
    except MathtuneError as e:
        raise MathtuneError(f"--retrieve exemplars: benchmark {spec.name!r} has no train split here ({e.message})",
                            "pass --exemplars DIR_OR_FILE (a built dataset dir or a JSONL of solved examples)") from None
    return [Example(id=f"{spec.name}-train-{p.id}", problem=p.problem, solution=clean_solution(p.solution or ""),
                    answer=p.gold, source=f"{spec.name}-train") for p in train if p.solution]
