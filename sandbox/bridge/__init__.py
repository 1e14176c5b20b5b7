"""The host side of a worker's protocol pipe: the one wall between agent code and the server.

Everything here assumes the worker is hostile: the code runs in the same process as the
worker's loop and its tool stub, so it can write any bytes to the pipe, stop reading it, or
forge any frame. What holds anyway, by construction:

- ``channel``: every read is bounded (frame size by what the server expects now, nesting
  depth, encodable strings) and total (any decoding failure is one `ProtocolViolation`), and
  every write is non-blocking: a worker that stops reading can stall nothing but its own run.
- ``calls``: a ``call`` frame is checked before anything reaches a tool (known tool, JSON
  object arguments within their size, strings that survive any wire), runs as a `Future` of
  its handler (no thread pool shared by sessions), and leaves a bounded record.
- ``watch``: one run is a small protocol state machine (``run`` sent -> calls answered one
  at a time -> one ``result`` with this run's token) driven by one select loop that checks
  the limits on every tick, calls included, so a waiting call never pauses the watchdog.
- ``idle``: between runs one thread checks every idle sandbox's tree against the same limits.
"""
