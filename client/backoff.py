"""Capped exponential backoff with jitter, for reconnecting."""

from __future__ import annotations

import random


class Backoff:
    """`next()` gives the delay before the next attempt: `initial * factor**n`, capped at
    `maximum`, each scaled down by a random share of up to `jitter` so that many clients
    dropped together do not come back together. `reset()` after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, jitter: float = 0.5) -> None:
        if not (0 < initial <= maximum and factor >= 1 and 0 <= jitter <= 1):
            raise ValueError("need 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self.attempts = 0
        self._random = random.Random()

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return ceiling * (1 - self.jitter * self._random.random())

    def reset(self) -> None:
        self.attempts = 0
