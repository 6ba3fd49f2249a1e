"""Can an output of type A feed an input of type B? Checked when a pipeline is built, not when it runs.

The rules are deliberately simple and conservative:
- `Any` on either side matches anything;
- a class matches itself and its base classes (`issubclass`);
- `X | None` / `Optional[X]` / `Union[...]` on the input side accepts any member; a Union on the output
  side must fit the input for every member;
- generics match when their origins match and their arguments match pairwise (`list[Hit]` -> `list[Hit]`);
  a bare origin on either side (`list` vs `list[Hit]`) matches any arguments.
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any


def compatible(sender: Any, receiver: Any) -> bool:
    if sender is Any or receiver is Any or sender == receiver:
        return True
    s_members, r_members = _union_members(sender), _union_members(receiver)
    if s_members is not None:
        return all(compatible(s, receiver) for s in s_members)
    if r_members is not None:
        return any(compatible(sender, r) for r in r_members)
    s_origin, r_origin = typing.get_origin(sender) or sender, typing.get_origin(receiver) or receiver
    if not (isinstance(s_origin, type) and isinstance(r_origin, type)):
        return False
    if not issubclass(s_origin, r_origin):
        return False
    s_args, r_args = typing.get_args(sender), typing.get_args(receiver)
    if not s_args or not r_args:
        return True
    if len(s_args) != len(r_args):
        return False
    return all(compatible(s, r) for s, r in zip(s_args, r_args))


def type_label(t: Any) -> str:
    """`list[Hit]` rather than `list[ragbit.search.searcher.Hit]`: short enough for an error message."""
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(t))  # drop module prefixes


def _union_members(t: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(t)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(t)
    return None
