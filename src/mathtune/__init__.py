"""mathtune: turn a base language model into a mathematics specialist, and prove it got better.

Stages (each a CLI command and a YAML recipe): data -> train -> eval -> compare/report -> export.
"""

__version__ = "0.1.0"
