"""`mathtune eval --tools python` (#13 part 2 wiring): the TIR loop runs inside the eval stage
with a scripted generator, and tool calls, failures and timeouts are recorded per response and
summed in metrics.json; plus the CLI flags for tools and retrieval reaching EvalConfig.

Run:  .venv/bin/python -m pytest tests/test_eval_tools.py -q
"""

from __future__ import annotations

import argparse
import json
import warnings

from mathtune.commands import eval as eval_cmd
from mathtune.eval.run import EvalConfig, load_config, run_eval
from mathtune.generation.base import Completion, truncate_at_stop
from mathtune.tools import SandboxWarning
from mathtune.tools.tir import OUTPUT_FENCE

SCRIPTS = {  # problem -> the model's turns (each cut at the output fence like a real backend)
    "What is 6 * 7?": ["Compute it.\n```python\nprint(6 * 7)\n```\n" + OUTPUT_FENCE, "So \\boxed{42}."],
    "What is 1/0?": ["```python\nprint(1 / 0)\n```\n" + OUTPUT_FENCE, "Undefined, \\boxed{0}."],
    "Loop forever?": ["```python\nwhile True:\n    pass\n```\n" + OUTPUT_FENCE, "It never ends, \\boxed{1}."],
    "What is 2 + 2?": ["Easy: \\boxed{4}."],
}
GOLDS = {"What is 6 * 7?": "42", "What is 1/0?": "5", "Loop forever?": "1", "What is 2 + 2?": "4"}


class ScriptedGenerator:
    tokenizer = None

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts, params, *, on_complete=None, seeds=None):
        self.calls += 1
        out = []
        for p in prompts:
            problem = next(q for q in SCRIPTS if q in p)
            turn = p.count(OUTPUT_FENCE)
            text, _ = truncate_at_stop(SCRIPTS[problem][turn], params.stop)
            out.append([Completion(text=text, tokens=len(text.split()), finish_reason="stop", time_s=0.0)])
        return out

    def close(self) -> None:
        pass


def test_eval_with_tools_records_and_sums_tool_use(tmp_path):
    bench = tmp_path / "toy" / "test.jsonl"
    bench.parent.mkdir()
    bench.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in GOLDS.items()))
    cfg = EvalConfig(model="scripted", benchmark=str(bench), fields="problem=question,answer=answer", prompt="cot",
                     output=str(tmp_path / "run"), grade_workers=1, batch_size=2, tools="python", tool_timeout=1.0)
    gen = ScriptedGenerator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        res = run_eval(cfg, progress=False, generator=gen)
    recs = {r["problem"]: r for r in res.records}
    ok = recs["What is 6 * 7?"]
    assert ok["tool_calls"] == 1 and ok["tool_failures"] == 0 and ok["correct"] is True
    assert f"{OUTPUT_FENCE}\n42\n```" in ok["response"] and ok["response"].endswith("So \\boxed{42}.")
    bad = recs["What is 1/0?"]
    assert bad["tool_failures"] == 1 and "ZeroDivisionError" in bad["response"]
    slow = recs["Loop forever?"]
    assert slow["tool_timeouts"] == 1 and slow["tool_failures"] == 0 and "TimeoutError" in slow["response"]
    none = recs["What is 2 + 2?"]
    assert none["tool_calls"] == 0 and none["correct"] is True
    tools = json.loads((res.run_dir / "metrics.json").read_text())["tools"]
    assert tools == {"calls": 3, "failures": 1, "timeouts": 1, "responses_with_calls": 3, "limit_reached": 0,
                     "calls_per_response": 0.75}
    assert gen.calls == 4  # two chunks of 2 problems, two rounds each


def test_cli_flags_reach_the_config():
    p = argparse.ArgumentParser()
    eval_cmd.add_arguments(p)
    args = p.parse_args(["--tools", "python", "--max-tool-calls", "2", "--retrieve", "cards", "--retrieve-k", "4",
                         "--cards", "a.yaml,b.jsonl", "--exemplars", "runs/data/mix"])
    cfg = load_config(None, eval_cmd._overrides(args))
    assert (cfg.tools, cfg.max_tool_calls, cfg.retrieve, cfg.retrieve_k) == ("python", 2, "cards", 4)
    assert cfg.cards == ["a.yaml", "b.jsonl"] and cfg.exemplars == "runs/data/mix"


def test_tools_default_to_the_tir_prompt_style():
    from mathtune.benchmarks import get_benchmark
    from mathtune.eval.run import style_name

    spec = get_benchmark("gsm8k")
    assert spec.prompt == "chat-boxed"
    assert style_name(EvalConfig(tools="python"), spec) == "chat-tir"
    assert style_name(EvalConfig(), spec) == "chat-boxed"
    assert style_name(EvalConfig(tools="python", prompt="cot"), spec) == "cot"


def test_solve_with_tools_and_cards(tiny_model_dir, monkeypatch, capsys):
    import mathtune.generation as generation
    from mathtune.cli import main

    seen: list[str] = []

    class FakeHF(ScriptedGenerator):
        def __init__(self, model, tokenizer, **kw):
            super().__init__()

        def generate(self, prompts, params, *, on_complete=None, seeds=None):
            seen.extend(prompts)
            return super().generate(prompts, params, on_complete=on_complete, seeds=seeds)

    monkeypatch.setattr(generation, "HFGenerator", FakeHF, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        code = main(["solve", "--model", str(tiny_model_dir), "--tools", "python", "--retrieve", "cards",
                     "What is 6 * 7?"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[tools: 1 program(s) run, 0 failed, 0 timed out]" in out and "Final answer: 42" in out
    assert "Facts that may help:" in seen[0] and "integrate natural language reasoning with programs" in seen[0]
