"""Connections that have not signed in yet, counted per client address and capped.

Before sign-in a connection costs memory and a sign-in deadline timer but proves
nothing; `max_pending_per_address` (default 256) bounds how many one address may hold.
Past it a new TCP connection is closed at accept (nothing is read or written) and a
WebSocket handshake is answered HTTP 429. A connection leaves the count when it signs
in or closes. Addresses in `limit_exempt` (default loopback) are not capped. Refusals
are logged, summarised per address.
"""

from __future__ import annotations

from gim.pkg import log
from gim.pkg.ratelimit import Networks, is_exempt

_log = log.get("connect")

EXEMPT_MEMO = 10_000  # client hosts whose exemption is remembered (then all are forgotten at once)


class PendingByAddress:
    def __init__(self, cap: int, exempt: Networks) -> None:
        self.cap = cap  # 0: no cap
        self._exempt = exempt
        self._counts: dict[str, int] = {}
        self._refusals = log.Summary(_log)
        # host -> exempt: parsing each new connection's address showed in sign-in profiles
        self._exempt_hosts: dict[str, bool] = {}

    def count(self, host: str) -> int:
        return self._counts.get(host, 0)

    def _capped(self, host: str) -> bool:
        if not self.cap:
            return False
        exempt = self._exempt_hosts.get(host)
        if exempt is None:
            if len(self._exempt_hosts) >= EXEMPT_MEMO:
                self._exempt_hosts.clear()
            exempt = self._exempt_hosts[host] = is_exempt(host, self._exempt)
        return not exempt

    def full(self, host: str) -> bool:
        """Whether a new connection from `host` would be refused (logged if so)."""
        if self._capped(host) and self._counts.get(host, 0) >= self.cap:
            self._refusals.warning("conn_refused_pending_cap", kind=host, client_host=host, cap=self.cap)
            return True
        return False

    def admit(self, host: str) -> bool:
        """Count a new connection from `host`; False (not counted) if the cap is reached."""
        if self.full(host):
            return False
        self._counts[host] = self._counts.get(host, 0) + 1
        return True

    def release(self, host: str) -> None:
        left = self._counts.get(host, 0) - 1
        if left > 0:
            self._counts[host] = left
        else:
            self._counts.pop(host, None)
