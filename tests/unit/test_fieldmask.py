"""The fake GCE's partial responses follow Google's field mask syntax (routectl.sim.fieldmask)."""

from __future__ import annotations

from typing import Any

import pytest

from routectl.sim.fieldmask import FieldMaskError, apply_field_mask, parse_field_mask

ANSWER: dict[str, Any] = {
    "kind": "compute#routeList",
    "items": [
        {"name": "a", "destRange": "10.0.0.0/24", "priority": 1000, "tags": ["x"],
         "nested": {"p": 1, "q": 2}},
        {"name": "b", "destRange": "10.0.1.0/24", "selfLink": "https://..."},
    ],
    "nextPageToken": "NTAw",
}


@pytest.mark.parametrize("mask, expected", [
    ("nextPageToken,items(name,destRange)",
     {"items": [{"name": "a", "destRange": "10.0.0.0/24"}, {"name": "b", "destRange": "10.0.1.0/24"}],
      "nextPageToken": "NTAw"}),
    ("items.name", {"items": [{"name": "a"}, {"name": "b"}]}),
    ("items/name,kind", {"kind": "compute#routeList", "items": [{"name": "a"}, {"name": "b"}]}),
    ("items(nested.q)", {"items": [{"nested": {"q": 2}}, {}]}),
    ("items(nested(p,q),name),items.name",
     {"items": [{"nested": {"p": 1, "q": 2}, "name": "a"}, {"name": "b"}]}),
    ("items(*)", {"items": ANSWER["items"]}),
    ("items.name,items", {"items": ANSWER["items"]}),  # the whole field wins over a part of it
    ("*", ANSWER),
    ("", ANSWER),
    ("missing", {}),  # absent fields stay absent
])
def test_masks_select_what_they_name(mask: str, expected: dict[str, Any]) -> None:
    assert apply_field_mask(ANSWER, parse_field_mask(mask)) == expected


@pytest.mark.parametrize("mask", ["items(name", "items)", "a,,b", "items.", "(name)"])
def test_malformed_masks_are_refused(mask: str) -> None:
    with pytest.raises(FieldMaskError):
        parse_field_mask(mask)
