"""Google API partial responses for the fake GCE: the `fields` system parameter / `X-Goog-FieldMask` header.

Syntax as Google documents it: comma-separated paths; a path's sub-fields by `.` or `/`
(`items.name`) or in parentheses (`items(name,destRange)`, nestable); `*` selects everything. Applied to
an answer, lists are filtered element by element and fields absent from the answer stay absent.
"""

from __future__ import annotations

from typing import Any

# a field name -> its own selection (None: the whole value)
Selection = dict[str, "Selection | None"]


class FieldMaskError(ValueError):
    """The mask does not parse."""


def parse_field_mask(mask: str) -> Selection | None:
    """The selection a mask names; None for an empty mask or `*` (everything)."""
    text = mask.replace(" ", "")
    if not text:
        return None
    sel, pos = _parse_list(text, 0)
    if pos != len(text):
        raise FieldMaskError(f"unexpected {text[pos]!r} at {pos} in field mask {mask!r}")
    return sel


def _merge(into: Selection, name: str, sub: Selection | None) -> None:
    old = into.get(name, {})
    if name not in into:
        into[name] = sub
    elif old is None or sub is None:
        into[name] = None  # the whole field wins over a part of it
    else:
        for k, v in sub.items():
            _merge(old, k, v)


def _parse_list(text: str, pos: int) -> tuple[Selection | None, int]:
    """Paths up to the end or a `)`; None when one of them is `*` (everything at this level)."""
    sel: Selection = {}
    everything = False
    while True:
        name, sub, pos = _parse_path(text, pos)
        if name == "*":
            everything = True
        else:
            _merge(sel, name, sub)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return (None if everything else sel), pos


def _parse_path(text: str, pos: int) -> tuple[str, Selection | None, int]:
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] in "_*"):
        pos += 1
    name = text[start:pos]
    if not name:
        raise FieldMaskError(f"a field name expected at {pos} in field mask {text!r}")
    if pos < len(text) and text[pos] in "./":
        sub_name, sub_sub, pos = _parse_path(text, pos + 1)
        return name, (None if sub_name == "*" else {sub_name: sub_sub}), pos
    if pos < len(text) and text[pos] == "(":
        sub, pos = _parse_list(text, pos + 1)
        if pos >= len(text) or text[pos] != ")":
            raise FieldMaskError(f"')' expected at {pos} in field mask {text!r}")
        return name, sub, pos + 1
    return name, None, pos


def apply_field_mask(value: Any, sel: Selection | None) -> Any:
    """`value` with only the selected fields (None selects all of it)."""
    if sel is None:
        return value
    if isinstance(value, list):
        return [apply_field_mask(v, sel) for v in value]
    if isinstance(value, dict):
        return {k: apply_field_mask(value[k], sub) for k, sub in sel.items() if k in value}
    return value
