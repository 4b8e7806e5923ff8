"""Why msgspec: decode + validate one technician frame with three codecs, same run, ratios.

    python -m loadtest.codec_bench [--out loadtest/results/codec.md]

Each candidate does the same job: parse the frame and check it is a ``location`` with an int
seq and float t/lat/lon (the hub's range checks come after and are the same for all).
The stdlib ``json`` is the baseline; the figure that matters is the ratio, since the
machines that run this are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import timeit
from pathlib import Path

import orjson

from realtime.protocol import decode_technician_frame

FRAME = json.dumps(
    {
        "type": "location",
        "seq": 123456,
        "t": 1_800_000_000.25,
        "lat": 52.520008,
        "lon": 13.404954,
        "acc": 8.5,
        "speed": 11.2,
        "heading": 271.0,
    }
)


def _check(raw: object) -> None:
    if not isinstance(raw, dict) or raw.get("type") != "location":
        raise ValueError("not a location")
    if not isinstance(raw["seq"], int) or isinstance(raw["seq"], bool):
        raise ValueError("seq")
    for name in ("t", "lat", "lon"):
        if not isinstance(raw[name], int | float) or isinstance(raw[name], bool):
            raise ValueError(name)
    for name in ("acc", "speed", "heading"):
        value = raw.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise ValueError(name)


def stdlib_json() -> None:
    _check(json.loads(FRAME))


def orjson_checks() -> None:
    _check(orjson.loads(FRAME))


def msgspec_typed() -> None:
    decode_technician_frame(FRAME)


CANDIDATES = {
    "json + hand checks (baseline)": stdlib_json,
    "orjson + hand checks": orjson_checks,
    "msgspec typed decode (used)": msgspec_typed,
}


def measure(repeat: int = 5, number: int = 20_000) -> dict[str, float]:
    """Best-of-``repeat`` nanoseconds per frame for each candidate."""
    return {
        name: min(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e9
        for name, fn in CANDIDATES.items()
    }


def report(results: dict[str, float]) -> str:
    baseline = results["json + hand checks (baseline)"]
    lines = [
        "# Codec benchmark: decode + validate one `location` frame",
        "",
        f"Python {platform.python_version()} on {platform.machine()}; best of 5 x 20,000.",
        "",
        "| codec | ns/frame | speed vs baseline |",
        "|---|---:|---:|",
    ]
    for name, ns in results.items():
        lines.append(f"| {name} | {ns:,.0f} | {baseline / ns:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/codec.md"))
    args = parser.parse_args()
    text = report(measure())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
