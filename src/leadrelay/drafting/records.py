"""Making frozen records in bulk, cheaply.

A frozen dataclass's generated `__init__` sets each field with `object.__setattr__`, a checked
call that costs about as much as ten plain attribute stores; a draft makes some twenty-five
evidence, segment and sentence records, and that was a tenth of its time. So where drafts make
them, they are made another way: an instance of a plain class with the same slots (`twin_of`)
is filled with plain stores, then given the record's class, which Python allows between classes
of one layout. What comes out is an ordinary instance of the record, equal to what its
constructor makes and frozen like it. Each such maker sits beside its record, and a test checks
that it makes what the constructor makes.
"""

from __future__ import annotations


def twin_of(record: type) -> type:
    """A plain class with `record`'s slots, in the same order: same layout, no frozen check."""
    return type(f"{record.__name__}Fields", (), {"__slots__": vars(record)["__slots__"]})
