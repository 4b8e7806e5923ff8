"""The rule that picks a network's background traffic (pure parts; SUMO is not in CI)."""

import pytest

from loadtest.sumo.calibrate import Probe, choose, parse_statistics

STATISTICS = """<?xml version="1.0" encoding="UTF-8"?>
<statistics>
    <performance clockBegin="1" clockEnd="2" duration="1"/>
    <vehicles loaded="1500" inserted="1438" running="80" waiting="0"/>
    <teleports total="521" jam="500" yield="15" wrongLane="6"/>
</statistics>
"""


def test_statistics_give_inserted_and_teleported_cars() -> None:
    assert parse_statistics(STATISTICS) == (1438, 521)


def test_statistics_without_the_counts_are_an_error() -> None:
    with pytest.raises(ValueError, match="teleports"):
        parse_statistics("<statistics><vehicles inserted='3'/></statistics>")


def test_the_densest_rate_under_two_percent_is_chosen() -> None:
    probes = [
        Probe(0.5, 1000, 300),
        Probe(0.35, 1000, 25),  # 2.5 %: fails
        Probe(0.25, 1000, 19),  # 1.9 %: passes
        Probe(0.12, 1000, 0),
    ]
    assert choose(probes) == probes[2]


def test_no_rate_is_chosen_when_every_one_gridlocks() -> None:
    assert choose([Probe(0.5, 1000, 300), Probe(0.1, 0, 0)]) is None
