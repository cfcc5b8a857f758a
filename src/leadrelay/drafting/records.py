"""Setting the fields of frozen records without `object.__setattr__`.

A frozen dataclass's generated `__init__` sets each field with `object.__setattr__`, which on
every call checks that it is not being used to get round a C-level `__setattr__`. Setting the
slots through their own descriptors stores the same values at about half the cost. A draft
makes some twenty evidence, segment and sentence records, so the records it makes in bulk
define their `__init__` with these setters (same signature and defaults as the generated one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Setter = Callable[[Any, Any], None]


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Setter, ...]:
    """The `__set__` of each slot of a slots class, in the order of `names`."""
    setters: tuple[Setter, ...] = tuple(vars(cls)[name].__set__ for name in names)
    return setters
