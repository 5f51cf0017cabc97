"""Loading, merging and validating recipes.

Merge order: built-in defaults, then recipe files (in order; a file may ``extends:`` another
recipe), then ``--set key.path=value`` overrides, then explicit flags. Errors name the key path,
the value and what was expected, suggest the nearest key for a typo, and say which source
introduced the mistake.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tlkit.errors import UnknownNameError, UserError, closest

# Flags of `tlkit finetune` and the recipe keys they set.
FLAG_KEYS = {
    "backbone": "model.backbone",
    "data": "data.source",
    "freeze": "freeze.policy",
    "weights": "weights.source",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.optimizer.lr",
    "image_size": "model.image_size",
    "output": "output.dir",
    "seed": "seed",
    "name": "name",
}


#: Training images per class at which a bare run (no --recipe) moves to the next regime: the
#: same thresholds as ``freeze.auto`` (small_per_class, large_per_class).
REGIME_THRESHOLDS = (100, 1000)


def regime_for(images_per_class: float) -> str:
    """The shipped regime recipe for this many training images per class."""
    small, large = REGIME_THRESHOLDS
    if images_per_class < small:
        return "regime-small"
    return "regime-medium" if images_per_class < large else "regime-large"


class RecipeError(UserError):
    """A recipe that does not validate (exit code 2)."""


def shipped_dir():
    """The folder of shipped recipes (inside the installed package)."""
    return resources.files("tlkit.recipes") / "shipped"


def shipped_recipes() -> dict[str, str]:
    """Shipped recipe names mapped to their one-line descriptions."""
    out = {}
    for entry in sorted(shipped_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text()) or {}
            out[entry.name[: -len(".yaml")]] = str(data.get("description", "")).strip()
    return out


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe is a mapping of sections, got {type(data).__name__}")
    return data


def read_recipe_source(name_or_path: str | Path, _seen: tuple = ()) -> dict[str, Any]:
    """Read one recipe (a file path or a shipped name) into a dict, following ``extends:``."""
    text, origin = _recipe_text(name_or_path)
    if origin in _seen:
        raise RecipeError(f"{origin}: 'extends' loops back on itself ({' -> '.join(_seen)})")
    data = _read_yaml(text, origin)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base_dir = Path(origin).parent if Path(origin).exists() else None
    candidate = base_dir / f"{parent}" if base_dir else None
    if candidate is not None and candidate.exists():
        parent = candidate
    return deep_merge(read_recipe_source(parent, (*_seen, origin)), data)


def _recipe_text(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.exists():
        if path.is_dir():
            raise RecipeError(f"{path} is a folder, not a recipe file")
        return path.read_text(), str(path)
    name = str(name_or_path)
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    stem = Path(stem).name if name.startswith(("recipes/", "./recipes/")) else stem
    entry = shipped_dir() / f"{stem}.yaml"
    if entry.is_file():
        return entry.read_text(), f"recipes/{stem}.yaml"
    if "/" in name or name.endswith((".yaml", ".yml")):
        near = closest(stem, shipped_recipes())
        hint = f" Shipped recipes with similar names: {', '.join(near)}." if near else ""
        raise RecipeError(f"recipe file not found: {name}.{hint}")
    raise UnknownNameError("recipe", name, shipped_recipes())


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, the rest replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(assignment: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise RecipeError(f"--set expects key.path=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set expects key.path=value, got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return nest(key, value)


def nest(key_path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key_path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def resolve_recipe(
    recipes: Iterable[str | Path] = (),
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
):
    """Build the resolved :class:`~tlkit.recipes.schema.Recipe` from every source, in order.

    Args:
        recipes: Recipe files or shipped names, applied in order.
        sets: ``key.path=value`` overrides.
        flags: Explicit CLI flags by name (see ``FLAG_KEYS``); None values are ignored.

    Raises:
        RecipeError: a source that does not validate, naming the source, key path and value.
    """
    from tlkit.recipes.schema import Recipe

    merged: dict[str, Any] = {}
    for source in recipes:
        data = read_recipe_source(source)
        merged = deep_merge(merged, data)
        _validate(Recipe, merged, origin=str(source))
    for assignment in sets:
        merged = deep_merge(merged, parse_set(assignment))
        _validate(Recipe, merged, origin=f"--set {assignment}")
    for flag, value in (flags or {}).items():
        if value is None:
            continue
        if flag not in FLAG_KEYS:
            raise ValueError(f"unknown flag {flag!r}")
        merged = deep_merge(merged, nest(FLAG_KEYS[flag], value))
        _validate(Recipe, merged, origin=f"--{flag.replace('_', '-')} {value}")
    return _validate(Recipe, merged, origin="recipe")


def validate_recipe(data: Mapping[str, Any], origin: str = "recipe"):
    """Validate a recipe mapping; raise :class:`RecipeError` with readable messages."""
    from tlkit.recipes.schema import Recipe

    return _validate(Recipe, dict(data), origin)


def _validate(model_cls: type[BaseModel], data: dict, origin: str):
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(model_cls, err) for err in exc.errors()]
        raise RecipeError(f"{origin}: invalid recipe\n  " + "\n  ".join(lines)) from None
    except UserError as exc:  # raised inside a validator (e.g. unknown backbone)
        raise RecipeError(f"{origin}: {exc}") from None


def _describe(model_cls: type[BaseModel], err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        valid = _fields_at(model_cls, loc[:-1])
        near = closest(loc[-1], valid, n=1)
        hint = f" Did you mean {'.'.join([*loc[:-1], near[0]])!r}?" if near else ""
        return f"{path}: unknown key.{hint} Valid keys here: {', '.join(valid)}"
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{path}: {message} (got {err.get('input')!r})"


def _fields_at(model_cls: type[BaseModel], loc: list[str]) -> list[str]:
    cls: Any = model_cls
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
        # unwrap Optional[...] / list[...] down to a model class if there is one
        for arg in getattr(cls, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                cls = arg
    return sorted(getattr(cls, "model_fields", {}))


def recipe_to_yaml(recipe) -> str:
    """The resolved recipe as YAML (what `tlkit recipes show` prints and runs store)."""
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
