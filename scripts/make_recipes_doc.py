"""Regenerate the key reference at the end of docs/recipes.md from the recipe schema.

Run: python scripts/make_recipes_doc.py
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel

from tlkit.recipes.schema import Recipe

MARKER = "<!-- generated: recipe keys -->"


def _model_of(annotation):
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _type(annotation) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return " or ".join(_type(typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated
                                 else a) for a in args)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    generic = typing.get_origin(annotation) is not None
    text = (str(annotation) if generic else getattr(annotation, "__name__", None)) or str(annotation)
    text = text.replace("typing.", "").replace("Literal", "one of ").replace("NoneType", "null")
    return text.replace(" | ", " or ")


def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        path = f"{prefix}{name}"
        if sub is not None and sub is not type(None) and not typing.get_args(field.annotation):
            out += rows(sub, path + ".")
            continue
        default = field.default if field.default_factory is None else field.default_factory()
        if isinstance(default, BaseModel):
            default = "(section)"
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| `{path}` | {_type(field.annotation)} | `{default!r}` | {desc} |")
    return out


def main() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
    text = doc.read_text()
    head = text.split(MARKER)[0]
    table = ["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows(Recipe)]
    doc.write_text(head + MARKER + "\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
