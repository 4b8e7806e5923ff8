"""Technician trips made by an independent traffic simulator, SUMO (``eclipse-sumo``).

Doorstep's own generator (``loadtest/traces.py``) is a one-car kinematic model written here,
so a detector tuned on it may only have learned its author's habits. These trips come from
SUMO's car-following and lane-changing models on real OpenStreetMap street networks that
ship with the ``eclipse-sumo`` wheel, among hundreds of background cars: queues at lights,
junctions that block, a street held up by a double-parked van. Doorstep writes only what
SUMO cannot know: the technician's plan (where the door is, where to park, how long the
visit lasts), the walk to the door and the stay indoors, and the phone (``trace_phone``).

- ``home``: find SUMO and its Python tools (``traci``, ``sumolib``);
- ``networks``: the networks used, and which one is held out;
- ``plan``: the technicians' trips on a network (doors, routes, stops), from a seed;
- ``run``: one SUMO run over TraCI, with background traffic, recording each technician;
- ``trips``: the recorded drives plus the visit on foot, through the phone, with the truth.
"""
