"""A routing engine for the simulated trips, speaking OSRM's HTTP route API.

``doorstep simulate-traces`` writes ``roads.json``: for each trip, the route a navigation
app would give over that trip's streets (``loadtest/roads.py``). This server answers
``GET /route/v1/{profile}/{lon},{lat};{lon},{lat}`` from it in OSRM's format, so
``doorstep eval-arrival --osrm-url`` exercises the hub's own routing path
(``realtime.routing.OsrmRouter`` and ``CachedRoute``) exactly as with a real OSRM::

    python -m loadtest.osrm_sim --roads traces/roads.json --port 5055 &
    doorstep eval-arrival ... --osrm-url http://127.0.0.1:5055

It knows the streets (the grid and the detours they force), not the traffic: like OSRM's
distance, its answer says nothing about lights, jams, where the technician will park, or a
missed turn. Destinations not in ``roads.json`` get OSRM's ``NoRoute`` (HTTP 400).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loadtest.roads import RoadBook

# OSRM's car profile reports a duration too; nothing in Doorstep uses it. A flat city speed
# keeps the answer well-formed without pretending to know the traffic.
NOMINAL_SPEED_MPS = 8.33


def _parse(coordinates: str) -> list[tuple[float, float]]:
    """'lon,lat;lon,lat' -> [(lat, lon), ...]; ValueError if malformed."""
    points = []
    for pair in coordinates.split(";"):
        lon, lat = (float(v) for v in pair.split(","))
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90):
            raise ValueError(pair)
        points.append((lat, lon))
    if len(points) != 2:
        raise ValueError("expected exactly two coordinates")
    return points


def make_app(book: RoadBook) -> Starlette:
    async def route(request: Request) -> JSONResponse:
        try:
            (lat, lon), (dest_lat, dest_lon) = _parse(request.path_params["coordinates"])
        except ValueError:
            return JSONResponse(
                {"code": "InvalidUrl", "message": "URL string malformed close to position 1"},
                status_code=400,
            )
        metres = book.route_distance_m(lat, lon, dest_lat, dest_lon)
        if metres is None:
            return JSONResponse(
                {"code": "NoRoute", "message": "Impossible route between points"}, status_code=400
            )
        duration = metres / NOMINAL_SPEED_MPS
        leg = {"distance": metres, "duration": duration, "weight": duration, "summary": ""}
        return JSONResponse(
            {
                "code": "Ok",
                "routes": [{**leg, "weight_name": "routability", "legs": [leg]}],
                "waypoints": [
                    {"name": "", "location": [lon, lat], "distance": 0.0},
                    {"name": "", "location": [dest_lon, dest_lat], "distance": 0.0},
                ],
            }
        )

    return Starlette(routes=[Route("/route/v1/{profile}/{coordinates}", route)])


def load(path: Path) -> RoadBook:
    return RoadBook.from_json(json.loads(path.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roads", type=Path, required=True, help="roads.json of simulate-traces")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args(argv)
    book = load(args.roads)
    print(f"osrm_sim: {len(book)} routes on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(make_app(book), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
