"""Before a hub run: bookings created over HTTP with the platform key, put en_route (only
the current visit gets positions), and a token minted for every socket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from loadtest.load.frames import DESTINATION

_PARALLEL = 16  # requests in flight while setting up


@dataclass
class Credentials:
    """Tokens by global index (technicians, bookings' customers) and by operator number."""

    technicians: dict[int, str] = field(default_factory=dict)
    customers: dict[int, str] = field(default_factory=dict)
    operators: dict[int, str] = field(default_factory=dict)


def booking_id(run_tag: str, n: int) -> str:
    return f"{run_tag}-b{n}"


def technician_id(run_tag: str, n: int) -> str:
    return f"{run_tag}-t{n}"


async def _token(http: httpx.AsyncClient, body: dict[str, str]) -> str:
    answer = await http.post("/v1/tokens", json=body)
    answer.raise_for_status()
    return str(answer.json()["token"])


async def prepare_hub(
    base: str, platform_key: str, run_tag: str, technicians: int, operators: int
) -> Credentials:
    """Create and start every booking and mint every token; raises on any HTTP error."""
    creds = Credentials()
    gate = asyncio.Semaphore(_PARALLEL)
    headers = {"Authorization": f"Bearer {platform_key}"}
    lat, lon = DESTINATION

    async def one(http: httpx.AsyncClient, n: int) -> None:
        booking, tech, customer = (
            booking_id(run_tag, n),
            technician_id(run_tag, n),
            f"{run_tag}-c{n}",
        )
        async with gate:
            body = {
                "id": booking,
                "customer_id": customer,
                "technician_id": tech,
                "destination": {"lat": lat, "lon": lon},
            }
            (await http.post("/v1/bookings", json=body)).raise_for_status()
            (await http.post(f"/v1/bookings/{booking}/en_route")).raise_for_status()
            creds.technicians[n] = await _token(http, {"role": "technician", "sub": tech})
            creds.customers[n] = await _token(
                http, {"role": "customer", "sub": customer, "booking": booking}
            )

    async def operator(http: httpx.AsyncClient, j: int) -> None:
        async with gate:
            creds.operators[j] = await _token(http, {"role": "operator", "sub": f"{run_tag}-op{j}"})

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        await asyncio.gather(
            *(one(http, n) for n in range(technicians)),
            *(operator(http, j) for j in range(operators)),
        )
    return creds
