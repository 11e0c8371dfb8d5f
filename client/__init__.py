"""gim.client: what apps, bots and our own tests use to talk to gim.

- `Client` (client.py): the high-level client, messages as an async iterator of
  `Message` / `RoomMessage` events (events.py), reconnecting by itself.
- `GimApi`, `Credentials` (api.py): typed LogicExt / UserExt calls.
- `TcpConnection`, `WsConnection` (connection.py): one raw long connection.

Logs go to the standard `logging` module under `gim.client`; a library prints nothing
itself, so nothing shows unless the application configures logging (for example
`logging.basicConfig(level=logging.INFO)`).
"""

import logging

from gim.client.api import Credentials, GimApi
from gim.client.client import Client, Timing
from gim.client.events import Event, Message, RoomMessage, Sender, decode_content, text

logging.getLogger("gim.client").addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "Credentials",
    "Event",
    "GimApi",
    "Message",
    "RoomMessage",
    "Sender",
    "Timing",
    "decode_content",
    "text",
]
