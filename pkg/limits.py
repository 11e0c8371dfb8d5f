"""Limits fixed by the wire contract, shared by connect and logic."""

FRAME_MAX = 65_535  # largest long-connection packet body (a TCP frame's uint16 length)
