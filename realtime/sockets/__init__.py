"""The WebSocket side of the hub: the three socket endpoints beside the code that serves them.

- ``technician`` (WS /v1/ws/technician), ``booking`` (WS /v1/ws/bookings/{id}) and ``ops``
  (WS /v1/ws/ops): the endpoints, with what they share in ``common``;
- ``connection``: one socket's receive loop, sender task and limits;
- ``fanout``: the per-connection bounded outbox the hub publishes into;
- ``ratelimit``: the pure token buckets (refuse or pace) a connection applies;
- ``routes``: the route table the app mounts.

The table is in ``routes``, not here: the hub imports ``fanout`` (it publishes into
outboxes), and the endpoints import the hub, so this package's root must import neither.
"""
