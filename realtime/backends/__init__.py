"""Backends behind the Bus, Store and Roster interfaces (``base.py``, ``roster.py``).

They serve the hub and import nothing of it: what they need (durable channel names, the
retention, a supervisor for background loops) is passed in. ``realtime.backend_factory``
picks them from the settings.
"""
