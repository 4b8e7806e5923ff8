"""The arrival evaluation harness behind ``doorstep eval-arrival`` (development tool).

``spec`` parses the inputs, ``replay`` runs them through the hub's arrival logic
(``geofence.arrival``), ``presence_score``/``eta_score``/``score`` turn the output into
the issue's metrics, ``report`` into Markdown, ``files`` reads and writes the files and
``routed`` fetches a routing engine's distances through ``realtime.routing``.
"""
