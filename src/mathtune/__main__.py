"""`python -m mathtune ...` is the `mathtune` command."""

from .cli import main

raise SystemExit(main())
