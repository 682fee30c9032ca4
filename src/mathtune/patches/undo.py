"""The record of what one application of a patch changed, and how to put every original back.

    undo = Undo("lora-fused-linear")
    undo.set_attr(layer, "forward", new_forward)      # an instance attribute, added or replaced
    undo.set_item(registry, "mathtune_varlen", fn)    # a mapping entry (registrations, ModuleDicts)
    undo.call(lambda: model.set_attn_implementation("sdpa"))
    undo.undo()                                        # or: `with undo: ...`

`undo()` restores the exact original objects, last change first: an attribute or entry that
did not exist is deleted again, one that did gets its original object back (identity, not a
copy). It runs once; later calls do nothing. `len(undo)` counts the patched targets (layers,
models) and an Undo is true when it patched any.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

_MISSING = object()


class Undo:
    """Restores what one patch application changed (see the module docstring)."""

    def __init__(self, patch: str) -> None:
        self.patch = patch
        self.targets = 0  # layers / models patched, for callers that report it
        self._restores: list[Callable[[], None]] = []

    def set_attr(self, obj: Any, name: str, value: Any) -> None:
        """Set an instance attribute of `obj` (e.g. `forward` on one module)."""
        original = vars(obj).get(name, _MISSING)
        setattr(obj, name, value)

        def restore() -> None:
            if original is not _MISSING:
                setattr(obj, name, original)
            elif name in vars(obj):
                delattr(obj, name)

        self._restores.append(restore)

    def set_item(self, mapping: MutableMapping[str, Any], key: str, value: Any) -> None:
        """Set `mapping[key]` (a registry entry, a ModuleDict's module)."""
        original = mapping[key] if key in mapping else _MISSING  # noqa: SIM401 (ModuleDict has no .get)
        mapping[key] = value

        def restore() -> None:
            if original is not _MISSING:
                mapping[key] = original
            elif key in mapping:
                del mapping[key]

        self._restores.append(restore)

    def call(self, restore: Callable[[], None]) -> None:
        """Run `restore` on undo (for changes made through a library's own setter)."""
        self._restores.append(restore)

    def undo(self) -> None:
        while self._restores:
            self._restores.pop()()
        self.targets = 0

    def __len__(self) -> int:
        return self.targets

    def __bool__(self) -> bool:
        return self.targets > 0

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"Undo({self.patch!r}, targets={self.targets}, changes={len(self._restores)})"
