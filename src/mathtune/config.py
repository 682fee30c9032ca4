"""Recipes: YAML files plus `key=value` overrides, validated into typed, frozen objects.

Every stage defines its recipe as a tree of `Section` models (pydantic, `extra="forbid"`,
frozen). `load_recipe` reads the YAML, applies dotted overrides (`train.lr=1e-4`), validates,
and turns any problem into one `MathtuneError` that names the file, the key and the closest
valid key. Blocks that belong to a library we build on (TRL's `trainer:` settings) are typed
`dict[str, Any]` and passed through for that library to validate; we never mirror its fields.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import MathtuneError, closest

T = TypeVar("T", bound=BaseModel)


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: `1e-4` and `5e-05` are numbers
    (YAML 1.1, PyYAML's default, wants a dot, so `learning_rate: 1e-4` was the string "1e-4")."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """YAML text -> Python objects with `YamlLoader` (safe; YAML 1.2 floats)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MathtuneError(f"recipe file not found: {path}", "check the path, or list recipes/ for shipped recipes")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MathtuneError(f"malformed YAML in recipe {path}{where}: {problem}", "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MathtuneError(
            f"recipe {path} must be a mapping of keys to values, got {type(data).__name__}",
            "start the file with top-level keys such as 'model:'",
        )
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars (`1e-4`, `true`, `[a, b]`)."""
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MathtuneError(f"bad override {item!r}", "write overrides as key=value, e.g. train.lr=1e-4")
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def _fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names of the section that `loc` (minus its last part) points into."""
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _section_type(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _section_type(annotation: Any) -> Any:
    """Find a BaseModel inside Optional[...] / list[...] / Union annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def validate(schema: type[T], data: dict[str, Any], source: str = "recipe") -> T:
    """Validate raw recipe data, raising one clear `MathtuneError` on the first problem."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            valid = _fields_at(schema, loc)
            guess = closest(str(loc[-1]), valid)
            hint = f"did you mean {'.'.join([*map(str, loc[:-1]), guess])!r}?" if guess else (
                f"valid keys here: {', '.join(valid)}" if valid else "remove it")
            raise MathtuneError(f"unknown key {key!r} in {source}", hint) from None
        if err["type"] == "missing":
            raise MathtuneError(f"missing required key {key!r} in {source}", "add it to the recipe or pass it as key=value") from None
        got = err.get("input")
        raise MathtuneError(
            f"invalid value for {key!r} in {source}: {err['msg']} (got {got!r})",
            "fix the value in the recipe or override it with key=value",
        ) from None


def load_recipe(schema: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read YAML at `path` (optional), apply overrides, validate into `schema`."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    source = f"recipe {path}" if path is not None else "command-line overrides"
    if overrides and path is not None:
        source += " (with command-line overrides)"
    return validate(schema, data, source)


def dump_recipe(obj: BaseModel) -> str:
    """The resolved recipe as YAML, for run directories (reloadable with `load_recipe`)."""
    return yaml.safe_dump(obj.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
