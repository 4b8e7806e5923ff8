"""Pure geometry and movement logic: fences, zones, presence (check-in/out) and ETA.

Nothing here does I/O or reads a clock: fixes and times come in as arguments, decisions
come out, so the hub, the evaluation command and the tests all drive the same code.
"""
