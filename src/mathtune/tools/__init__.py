"""Tools for tool-integrated reasoning: a sandboxed Python executor and a calculator.

    from mathtune.tools import SandboxPool, calculate
    with SandboxPool() as pool:
        print(pool.run("print(2 + 2)").output)   # "4\n"
    print(calculate("3/4 + 1/4"))               # "1"

sandbox.py (one worker, protection levels), pool.py (warm workers, thread-safe), calculator.py
(exact arithmetic without running code). Standard library only; nothing heavy at import.
"""

from .calculator import CalculatorError, calculate
from .pool import SandboxPool
from .sandbox import ExecResult, Limits, Protection, Sandbox, SandboxWarning, protection

__all__ = ["CalculatorError", "ExecResult", "Limits", "Protection", "Sandbox", "SandboxPool", "SandboxWarning",
           "calculate", "protection"]
