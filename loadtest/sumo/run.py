"""One SUMO run: background traffic plus the planned technicians, recorded over TraCI.

Background cars are SUMO's own ``randomTrips.py`` (entering mostly at the network's
fringe, routed by SUMO at insertion, some rerouting round jams). The technicians drive
their planned routes and park (off the lane) for the planned visit; SUMO decides how long
the way there and away takes. For a ``queue_past`` trip a delivery van is put on the
technician's street, 15-60 m past the door, as the technician turns into it, and holds the
lane for 3-5 minutes: whatever queues behind it (the technician among them) is SUMO's.

Each technician's true position, speed and heading is recorded every second, with when its
stop began and ended, until ``tail_s`` after it drove off (or passed the door).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import xml.sax.saxutils
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.sumo.home import binary, tools
from loadtest.sumo.plan import TechPlan

# A vehicle stuck longer than this is teleported by SUMO (gridlock breaker). A technician
# who teleports has a jump in their track: that trip is dropped and counted.
TELEPORT_S = 300
# After passing the door, how far before the trace may end (a drive-past's tail).
PASSED_FAR_M = 250.0


@dataclass
class Track:
    """What SUMO did with one technician."""

    plan: TechPlan
    points: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    # (t, x, y, speed m/s, heading degrees clockwise from north)
    stop_start: float | None = None
    stop_end: float | None = None
    passed_t: float | None = None  # drove on past the door (passing kinds)
    end_t: float | None = None
    teleported: bool = False
    block_inserted_t: float | None = None


def simulate(
    net_file: Path,
    plans: Sequence[TechPlan],
    *,
    seed: int,
    traffic_per_s: float,
    end_s: float,
    workdir: Path,
) -> list[Track]:
    """Run SUMO until every technician's trace is over (or ``end_s``); their tracks."""
    tools()
    import traci  # type: ignore[import-not-found]
    import traci.constants as tc  # type: ignore[import-not-found]

    workdir.mkdir(parents=True, exist_ok=True)
    background = background_trips(net_file, workdir, seed, traffic_per_s, end_s)
    technicians = workdir / "technicians.rou.xml"
    technicians.write_text(_routes_xml(plans), encoding="utf-8")
    cmd = [
        *sumo_command(net_file, [background, technicians], seed=seed, end_s=end_s),
        "--collision.action", "warn",
    ]  # fmt: skip
    label = f"doorstep-{workdir.name}-{seed}"
    traci.start(cmd, label=label)
    conn = traci.getConnection(label)
    tracks = {plan.vehicle_id: Track(plan) for plan in plans}
    live: set[str] = set()
    wanted = (tc.VAR_POSITION, tc.VAR_SPEED, tc.VAR_ANGLE, tc.VAR_ROUTE_INDEX)
    try:
        while True:
            conn.simulationStep()
            t = conn.simulation.getTime()
            for vid in conn.simulation.getDepartedIDList():
                if vid in tracks:
                    conn.vehicle.subscribe(vid, wanted)
                    live.add(vid)
            for vid in conn.simulation.getStartingTeleportIDList():
                if vid in tracks:
                    tracks[vid].teleported = True
            for vid in conn.simulation.getStopStartingVehiclesIDList():
                if vid in tracks and tracks[vid].stop_start is None:
                    tracks[vid].stop_start = t
            for vid in conn.simulation.getStopEndingVehiclesIDList():
                if vid in tracks and tracks[vid].stop_end is None:
                    tracks[vid].stop_end = t
            arrived = set(conn.simulation.getArrivedIDList())
            for vid in list(live):
                track = tracks[vid]
                if vid in arrived:
                    track.end_t = t
                    live.discard(vid)
                    continue
                values = conn.vehicle.getSubscriptionResults(vid)
                if not values:
                    continue
                x, y = values[tc.VAR_POSITION]
                track.points.append(
                    (t, x, y, float(values[tc.VAR_SPEED]), float(values[tc.VAR_ANGLE]) % 360.0)
                )
                _maybe_block(conn, track, values[tc.VAR_ROUTE_INDEX], t)
                if _trace_over(track, values[tc.VAR_ROUTE_INDEX], x, y, t):
                    track.end_t = t
                    live.discard(vid)
                    with contextlib.suppress(traci.TraCIException):
                        conn.vehicle.remove(vid)
            if (
                not live
                and all(v.end_t is not None or v.teleported for v in tracks.values())
                and t > max(p.depart_s for p in plans)
            ):
                break
            if t >= end_s:
                break
    finally:
        conn.close()
    return list(tracks.values())


def sumo_command(net_file: Path, routes: Sequence[Path], *, seed: int, end_s: float) -> list[str]:
    """The SUMO command line every run shares (the probe in ``calibrate`` included)."""
    return [
        str(binary("sumo")),
        "-n", str(net_file),
        "-r", ",".join(str(r) for r in routes),
        "--step-length", "1",
        "--begin", "0",
        "--end", str(int(end_s)),
        "--seed", str(seed),
        "--time-to-teleport", str(TELEPORT_S),
        "--ignore-route-errors", "true",
        "--no-step-log", "true",
        "--no-warnings", "true",
        "--device.rerouting.probability", "0.3",
        "--device.rerouting.period", "60",
    ]  # fmt: skip


def _maybe_block(conn: object, track: Track, route_index: int, t: float) -> None:
    """Put the delivery van on the street as the technician turns towards the door."""
    block = track.plan.block
    if block is None or track.block_inserted_t is not None:
        return
    door_index = track.plan.edges.index(track.plan.door_edge)
    if route_index < door_index - 1:
        return
    vid = f"{track.plan.vehicle_id}-van"
    route_id = f"{vid}-route"
    conn.route.add(route_id, [block.edge, block.follow_edge])  # type: ignore[attr-defined]
    conn.vehicle.add(  # type: ignore[attr-defined]
        vid,
        route_id,
        typeID="delivery",
        depart="now",
        departPos=f"{block.pos:.1f}",
        departLane=str(block.lane),
        departSpeed="0",
    )
    conn.vehicle.setStop(  # type: ignore[attr-defined]
        vid, block.edge, pos=block.pos + 1.0, laneIndex=block.lane, duration=block.hold_s
    )
    track.block_inserted_t = t


def _trace_over(track: Track, route_index: int, x: float, y: float, t: float) -> bool:
    plan = track.plan
    if plan.stop is not None:
        return track.stop_end is not None and t >= track.stop_end + plan.tail_s
    far = math.hypot(x - plan.dest_x, y - plan.dest_y) > PASSED_FAR_M
    if track.passed_t is None and route_index > plan.edges.index(plan.door_edge) and far:
        track.passed_t = t
    return track.passed_t is not None and t >= track.passed_t + plan.tail_s


def background_trips(net_file: Path, workdir: Path, seed: int, per_s: float, end_s: float) -> Path:
    """Background trips from SUMO's randomTrips.py (routed by SUMO when they depart)."""
    out = workdir / "background.trips.xml"
    script = tools() / "randomTrips.py"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "-n",
            str(net_file),
            "-o",
            str(out),
            "--seed",
            str(seed),
            "--begin",
            "0",
            "--end",
            str(int(end_s)),
            "--period",
            f"{1.0 / per_s:.3f}",
            "--fringe-factor",
            "5",
            "--min-distance",
            "300",
            "--prefix",
            "bg",
            "--vehicle-class",
            "passenger",
        ],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    return out


def _routes_xml(plans: Sequence[TechPlan]) -> str:
    esc = xml.sax.saxutils.quoteattr
    lines = [
        "<routes>",
        '  <vType id="van" vClass="passenger" length="5.5" maxSpeed="36" accel="2.0" '
        'decel="4.0" sigma="0.5"/>',
        '  <vType id="delivery" vClass="delivery" length="7.0" maxSpeed="25"/>',
    ]
    for plan in sorted(plans, key=lambda p: p.depart_s):
        lines.append(
            f'  <vehicle id={esc(plan.vehicle_id)} type="van" depart="{plan.depart_s:.1f}" '
            'departLane="best" departSpeed="max">'
        )
        lines.append(f"    <route edges={esc(' '.join(plan.edges))}/>")
        if plan.stop is not None:
            stop = plan.stop
            lines.append(
                f'    <stop lane={esc(f"{stop.edge}_{stop.lane}")} endPos="{stop.pos:.1f}" '
                f'duration="{stop.duration_s:.0f}" parking="true"/>'
            )
        lines.append("  </vehicle>")
    lines.append("</routes>")
    return "\n".join(lines) + "\n"
