"""The long-connection protocol without I/O, shared by connect, the SDK, bench and the tests.

- `frames`: TCP framing (2-byte big-endian length + body, sticky and split packets);
  WebSocket carries one packet per binary message.
- `packets`: the `Input` / `Output` protobuf envelopes, parsed and built.
- `push_order`: a device's pushes in seq order (held behind a gap, filled from logic).
- `machine` and `actions`: the server side of one connection as a state machine, bytes
  and events in, actions out; connect's `Session` is its asyncio adapter.
- `client_framing`: the client side of both transports over bytes (TCP frames, WebSocket
  messages on websockets' sans-I/O client), for load generators.

docs/protocol.md is the contract for client authors.
"""
