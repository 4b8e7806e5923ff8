"""Dispatch benchmark (issue 15): simulated days replayed under three dispatch policies.

    python -m loadtest.dispatch_bench --days 5 --seed 1 --out loadtest/results/dispatch.md

``world`` draws a seeded city and day, ``policies`` are greedy-nearest, today's ranking
(``realtime.dispatch.evaluate``) and batch matching (``realtime.batch_match.match``),
``simulate`` replays one policy through one day (discrete events, time a float),
``metrics`` and ``report`` turn the runs into the markdown. All pure but the CLI.
"""
