"""The answer grader: one grader for evaluation metrics, RL rewards, data filtering and the
`mathtune grade` command. Imports no torch; sympy only runs in worker processes.

    from mathtune.grading import grade, grade_many, extract_answer, gold_answer, answers_equivalent
    grade("... so the answer is \\boxed{18}.", "Janet ... #### 18")
    # Grade(status='ok', extracted='18', gold='18', correct=True)

Pipeline: extract.py (answer cascade, `EXTRACTORS`, `DEFAULT`) -> normalize.py (canonical
strings, exact numbers) -> structure.py (tuples, intervals, sets, equations) -> equivalence.py
(fast in-process verdicts) -> symbolic.py (sympy, in worker processes: pool.py, worker.py)
-> grade.py (`Grade`, `grade`, `grade_many`).
"""

from .equivalence import answers_equivalent
from .extract import DEFAULT, EXTRACTORS, extract_answer, gold_answer
from .grade import Grade, GradeStatus, grade, grade_many

__all__ = [
    "DEFAULT",
    "EXTRACTORS",
    "Grade",
    "GradeStatus",
    "answers_equivalent",
    "extract_answer",
    "gold_answer",
    "grade",
    "grade_many",
]
