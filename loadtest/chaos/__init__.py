"""``doorstep loadtest --chaos``: two hubs on one Redis under steady load while hubs are
killed and restarted, Redis restarts and clients drop; then the checks of what survived.

config (the options), plan (the seeded fault schedule, pure), trips (where each technician
is when, pure), procs (Redis, the hubs, the balancer), fleet (the SDK clients and what
they record), checks (pure verdicts over the records), report (JSON and PNG), run (the
whole soak in order).
"""
