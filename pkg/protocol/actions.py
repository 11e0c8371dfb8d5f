"""What the connection state machine (`machine.Connection`) asks its adapter to do, and
what the adapter tells it back about calls to logic.

Actions are plain values (not frozen: one is made per packet and per push, and a frozen
dataclass takes twice as long to build). An adapter executes them in the order given:
`Send` and `CloseTransport` touch the socket, the `Call`s go to logic (each answered
later through `Connection.answered(call, outcome)`), timers are started and stopped by
name and report back through `Connection.timer_fired(timer)`, and the rest update what
the node knows about the connection (its device, its room) or go to the log.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from gim.pkg.protocol.packets import Encoded


class Timer(enum.Enum):
    SIGN_IN = "sign_in"  # the sign-in deadline: the connection closes if it has not signed in
    GAP = "gap"  # pushes wait behind a missing seq: fetch it from logic when this fires


@dataclasses.dataclass(slots=True)
class Send:
    """Write one encoded `Output` to the client (TCP: `out.frame`, WebSocket: `out.body`)."""

    out: Encoded


@dataclasses.dataclass(slots=True)
class CloseTransport:
    """Close the connection once what is queued has been written."""


@dataclasses.dataclass(slots=True)
class StartTimer:
    """Start `timer` (restart it if it runs) to fire after `seconds`."""

    timer: Timer
    seconds: float


@dataclasses.dataclass(slots=True)
class StopTimer:
    timer: Timer


@dataclasses.dataclass(slots=True)
class Bind:
    """Signed in: this connection is now the device's on this node (another connection of
    the device here is replaced) and no longer counts as pending."""

    user_id: int
    device_id: int


@dataclasses.dataclass(slots=True)
class SetRoom:
    """Leave room `leave` (0: none) and join room `join` (0: none)."""

    leave: int
    join: int


@dataclasses.dataclass(slots=True)
class Ended:
    """The connection is over (the last action it asks for): forget it; with a
    `device_id` it was signed in, and the device is marked offline at logic if this
    connection still held it here."""

    reason: str
    user_id: int
    device_id: int
    replaced: bool


@dataclasses.dataclass(slots=True)
class MarkOffline:
    """Tell logic the device is offline (a sign-in logic accepted after the client left)."""

    user_id: int
    device_id: int


@dataclasses.dataclass(slots=True)
class Log:
    """A log line about this connection; `summarised`: one of a burst (logged once per
    kind and interval, `fields["kind"]` says which)."""

    level: str
    event: str
    fields: dict[str, Any]
    summarised: bool = False


@dataclasses.dataclass(slots=True)
class SyncedHere:
    """A client's sync answered by the connection itself (nothing after its seq: see
    `PushOrder.has_all_after`), not by logic: for the node's metrics."""


# -- calls to logic (compared by identity: each is answered once) ----------------------


@dataclasses.dataclass(slots=True, eq=False)
class SignIn:
    """LogicInt.ConnSignIn; answered with the user's highest seq (None: logic did not say)."""

    user_id: int
    device_id: int
    token: str


@dataclasses.dataclass(slots=True, eq=False)
class Sync:
    """LogicInt.Sync from `seq`; answered with a serialized `SyncOutput` (SyncResp is the
    same on the wire). `fill`: the connection's own gap fill, not a client's PT_SYNC."""

    user_id: int
    device_id: int
    seq: int
    fill: bool = False


@dataclasses.dataclass(slots=True, eq=False)
class Ack:
    """LogicInt.MessageACK; answered with None."""

    user_id: int
    device_id: int
    device_ack: int
    receive_time: int


@dataclasses.dataclass(slots=True, eq=False)
class SubscribeRoom:
    """LogicInt.SubscribeRoom (replays the room's kept messages after `seq` through
    ConnectInt before it answers); answered with None."""

    user_id: int
    device_id: int
    room_id: int
    seq: int


Call = SignIn | Sync | Ack | SubscribeRoom
Action = Send | CloseTransport | StartTimer | StopTimer | Bind | SetRoom | Ended | MarkOffline | Log | SyncedHere | Call


# -- how a call went ----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Answered:
    """Logic answered; `value` as each call says."""

    value: Any = None


@dataclasses.dataclass(slots=True)
class Refused:
    """Logic answered with a gim error."""

    code: int
    message: str


@dataclasses.dataclass(slots=True)
class Unreachable:
    """Logic could not be asked (a gRPC status other than a gim error)."""

    status: str
    details: str


@dataclasses.dataclass(slots=True)
class NodeStopping:
    """A sign-in this node refused because it is shutting down."""


@dataclasses.dataclass(slots=True)
class Failed:
    """The call failed unexpectedly (a bug, or cancelled): the connection closes."""

    error: str


Outcome = Answered | Refused | Unreachable | NodeStopping | Failed
