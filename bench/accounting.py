"""Exact delivery accounting, without I/O.

The scenario says which (device, seq) pairs it expects (`expect`); the clients report
every pushed message as it arrives (`delivered`). `summary()` then counts, per device:

- lost: expected and never delivered,
- duplicated: delivered more than once (each extra copy counts),
- out_of_order: delivered (first time) after a higher seq had already arrived,
- unexpected: delivered but never expected (counted as lost accounting too: a fail).

Deliveries are kept as an append-only array per device (8 bytes each); devices that
expect the same seqs (a room) may share one expected set.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Collection, Iterable


@dataclasses.dataclass(frozen=True)
class Summary:
    sent: int
    expected: int
    delivered: int
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpected)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __add__(self, other: Summary) -> Summary:
        return Summary(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


class Accounting:
    def __init__(self) -> None:
        self.sent = 0  # messages (or pushes, or requests) the scenario sent
        self._expected: dict[int, Collection[int]] = {}
        self._delivered: dict[int, array[int]] = {}

    def expect(self, device: int, seqs: Collection[int]) -> None:
        """`device` must receive each of `seqs` exactly once, in increasing order."""
        self._expected[device] = seqs

    def expect_more(self, device: int, seqs: Iterable[int]) -> None:
        current = self._expected.get(device)
        merged = set(current) if current is not None else set()
        merged.update(seqs)
        self._expected[device] = merged

    def delivered(self, device: int, seq: int) -> None:
        got = self._delivered.get(device)
        if got is None:
            got = self._delivered[device] = array("q")
        got.append(seq)

    def delivered_count(self) -> int:
        return sum(len(got) for got in self._delivered.values())

    def expected_count(self) -> int:
        return sum(len(seqs) for seqs in self._expected.values())

    def complete(self) -> bool:
        """Every expected pair has arrived (cheap check: counts only, for waiting)."""
        return self.delivered_count() >= self.expected_count()

    def summary(self) -> Summary:
        lost = duplicated = out_of_order = unexpected = 0
        for device in self._expected.keys() | self._delivered.keys():
            expected = self._expected.get(device, ())
            got = self._delivered.get(device, array("q"))
            seen: set[int] = set()
            highest = None
            for seq in got:
                if seq in seen:
                    duplicated += 1
                    continue
                seen.add(seq)
                if highest is not None and seq < highest:
                    out_of_order += 1
                else:
                    highest = seq
                if seq not in expected:
                    unexpected += 1
            lost += sum(1 for seq in expected if seq not in seen)
        return Summary(
            sent=self.sent,
            expected=self.expected_count(),
            delivered=self.delivered_count(),
            lost=lost,
            duplicated=duplicated,
            out_of_order=out_of_order,
            unexpected=unexpected,
        )
