"""Logic's edges: the only modules of logic that speak protobuf and gRPC.

Inbound: `servicers` (LogicExt, LogicInt) and `admin_servicer` (LogicAdmin), with `pb_values` turning requests into domain
values and domain values into responses. Outbound: `connect_client` (pushes to the
connect nodes), `previous_connections` (closing a moved device's old connection),
`business_client` (tokens and user profiles from the business service). Encodings:
`message_encoding` (what a device is pushed or synced, and the frame bound) and
`event_encoding` (server events). The domain reaches the outbound ones through the
protocols of `internal/logic/ports.py`.
"""
