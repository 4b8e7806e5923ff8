"""``doorstep loadtest``: simulated technicians, customers and operators against the hub
or the bare relay, measured and reported (issue 13).

``config`` (options and the pure plan of who does what when) → ``servers`` (start the hub or
relay, sample its CPU and memory) → ``setup`` (bookings and tokens over HTTP) → ``worker``
(generator processes: sockets, pacing, counting) → ``driver`` (one run per target, progress)
→ ``report`` (the JSON) and ``plot`` (the PNG). ``frames`` pre-encodes what is sent and
``stats`` holds the pure maths. Only ``realtime.protocol`` of the hub may be imported here.
"""
