"""A grading worker process: reads JSON tasks on stdin, writes verdicts on stdout.

Started by pool.py as `python -m mathtune.grading.worker`; it imports sympy and
latex2sympy2_extended once, warms the LaTeX parser, says `{"ready": true}`, then answers
`{"id", "gold", "pred"}` lines with `{"id", "status": "ok"|"unparseable", "correct"}`. The
parent kills it when a task overruns its time limit, so nothing here needs its own timeout
(no signal.alarm). Its address space is capped so a runaway expansion fails with MemoryError
instead of swapping the machine.

Try it:  echo '{"id": 0, "gold": "\\\\sqrt{2}/2", "pred": "1/\\\\sqrt{2}"}' | python -m mathtune.grading.worker
"""

from __future__ import annotations

import json
import os
import sys

MEMORY_HEADROOM = 3 * 1024**3  # bytes a worker may grow beyond its size after start-up


def judge_pair(gold: str, pred: str) -> dict:
    """Full (sympy-backed) verdict for two cleaned answers."""
    from .equivalence import compare_nodes
    from .structure import parse_shape
    from .symbolic import SympyJudge

    judge = SympyJudge()
    try:
        correct = bool(compare_nodes(parse_shape(gold), parse_shape(pred), judge))
    except (RecursionError, MemoryError, OverflowError) as e:
        return {"status": "unparseable", "correct": False, "error": type(e).__name__}
    except Exception as e:  # sympy raises a zoo of types on odd input; none of them is a verdict
        return {"status": "unparseable", "correct": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    status = "ok" if correct or not judge.unparseable else "unparseable"
    return {"status": status, "correct": correct, "gold_unreadable": status == "unparseable" and judge.gold_unreadable}


def _cap_memory() -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        limit = pages * os.sysconf("SC_PAGE_SIZE") + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: rely on the parent's timeout alone


def main() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    judge_pair("x^2", "\\frac{x}{2}")  # import sympy and warm the ANTLR parser
    _cap_memory()
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            task = json.loads(line)
        except json.JSONDecodeError:
            continue
        result = judge_pair(str(task.get("gold", "")), str(task.get("pred", "")))
        result["id"] = task.get("id")
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
