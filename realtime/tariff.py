"""A city's travel fee: the tariff as data and the quote as a pure function of it.

The customer is shown the fee before booking and the platform bills what was shown, so a
quote must be reproducible from its inputs and explain itself line by line. Money is
counted exactly: the tariff's amounts are read as the decimal numbers they were written as
(``0.8`` is 8/10, not the nearest binary float), every line is worked out as an exact
fraction, and each line is rounded once, half up, to the currency's minor unit (cents)
at its end. The total is the sum of the rounded lines, so the lines always add up.

The quote, step by step:

1. ``base``: the base fee. ``distance``: kilometres over ``free_km`` times ``per_km``
   (the distance counted in whole metres). ``time``: minutes times ``per_min`` (the
   duration counted in whole seconds). These three lines are always there.
2. ``night`` or ``peak``: when the trip starts (``at_t``, in the city's local time) inside
   the night window or a peak window, a surcharge of (multiplier - 1) x the sum of step 1.
   When both apply, only the larger multiplier counts, never both multiplied (a night
   trip in a peak hour is not charged twice for being at a busy time); on a tie night
   wins. The quote's ``night`` and ``peak`` flags still say that both applied.
3. ``cap`` (a negative line) brings a total above ``cap`` down to it; ``minimum`` brings a
   total below ``minimum`` up to it. A tariff's minimum is never above its cap.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from realtime.local_time import ALL_WEEK, LocalWindow, local_datetime

LineCode = Literal["base", "distance", "time", "night", "peak", "cap", "minimum"]
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# A surcharge above x10 is far more likely a typo (125 for 1.25) than a tariff.
MAX_MULTIPLIER = 10.0
# ISO 4217 minor units run from 0 (JPY) to 4 (UYW); most currencies have 2.
MAX_MINOR_DIGITS = 4
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _is_amount(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class Tariff(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Amounts are in major units (2.5 = 2.50 EUR); windows are in the city's local time."""

    version: str  # which tariff a quote used, e.g. "2026-12-01"
    currency: str  # ISO 4217, three capital letters
    base_fee: float = 0.0
    free_km: float = 0.0  # kilometres included in the base fee
    per_km: float = 0.0
    per_min: float = 0.0
    night: LocalWindow | None = None  # e.g. 22:00-06:00 (days: the days the night starts)
    night_multiplier: float = 1.0
    peak: tuple[LocalWindow, ...] = ()
    peak_multiplier: float = 1.0
    cap: float | None = None  # the most a trip costs
    minimum: float | None = None  # the least a trip costs
    minor_digits: int = 2  # digits of the minor unit: 2 for cents, 0 for yen

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise ValueError("a tariff needs a version (e.g. '2026-12-01')")
        where = f"tariff {self.version!r}"
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise ValueError(
                f"{where}: currency is an ISO 4217 code of three capital letters "
                f"(EUR, USD), not {self.currency!r}"
            )
        for name in ("base_fee", "free_km", "per_km", "per_min", "cap", "minimum"):
            value = getattr(self, name)
            if value is not None and not _is_amount(value):
                raise ValueError(f"{where}: {name} must be a finite number >= 0, not {value!r}")
        for name in ("night_multiplier", "peak_multiplier"):
            value = getattr(self, name)
            if not _is_amount(value) or not 1.0 <= value <= MAX_MULTIPLIER:
                raise ValueError(
                    f"{where}: {name} must be from 1 (no surcharge) to {MAX_MULTIPLIER:g}, "
                    f"not {value!r}"
                )
        if self.cap is not None and self.minimum is not None and self.minimum > self.cap:
            raise ValueError(
                f"{where}: minimum {self.minimum} is above cap {self.cap}: no fee satisfies both"
            )
        digits = self.minor_digits
        if isinstance(digits, bool) or not isinstance(digits, int):
            raise ValueError(f"{where}: minor_digits must be an integer, not {digits!r}")
        if not 0 <= digits <= MAX_MINOR_DIGITS:
            raise ValueError(f"{where}: minor_digits must be 0 to {MAX_MINOR_DIGITS}, not {digits}")


class FeeLine(msgspec.Struct, frozen=True):
    code: LineCode  # stable id for clients: base, distance, time, night, peak, cap, minimum
    amount_minor: int  # in minor units (cents); a cap line is negative
    detail: str  # for people: "7.4 km - 3 km free = 4.4 km x 0.80"


class FeeQuote(msgspec.Struct, frozen=True):
    total_minor: int  # the sum of the lines' amounts
    currency: str
    minor_digits: int  # total_minor / 10**minor_digits is the fee in major units
    tariff_version: str
    breakdown: tuple[FeeLine, ...]
    local_time: str  # the trip's start in the city's time, ISO 8601 with its offset
    night: bool  # the start is in the night window
    peak: bool  # the start is in a peak window


DEFAULT_TARIFF = Tariff(version="free", currency="XXX")
"""No fee at all (XXX: ISO 4217's "no currency"): a deployment without cities quotes 0."""


def quote_fee(
    tariff: Tariff, distance_m: float, duration_s: float, at_t: float, zone: ZoneInfo
) -> FeeQuote:
    """The fee of a trip of ``distance_m`` metres and ``duration_s`` seconds starting at
    ``at_t`` (Unix seconds), with night and peak hours read in ``zone``."""
    for name, value in (("distance_m", distance_m), ("duration_s", duration_s)):
        if not _is_amount(value):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    local = local_datetime(at_t, zone)  # raises on a non-finite at_t
    digits = tariff.minor_digits
    money = _Money(digits)

    metres = _round_half_up(_exact(distance_m))
    seconds = _round_half_up(_exact(duration_s))
    km = Fraction(metres, 1000)
    free_km = _exact(tariff.free_km)
    charged_km = max(Fraction(0), km - free_km)
    lines = [
        FeeLine(
            "base", money.minor(_exact(tariff.base_fee)), f"base fee {money.rate(tariff.base_fee)}"
        ),
        FeeLine(
            "distance",
            money.minor(charged_km * _exact(tariff.per_km)),
            f"{_km(km)} km - {_km(free_km)} km free = {_km(charged_km)} km"
            f" x {money.rate(tariff.per_km)}",
        ),
        FeeLine(
            "time",
            money.minor(Fraction(seconds, 60) * _exact(tariff.per_min)),
            f"{_minutes(seconds)} x {money.rate(tariff.per_min)}",
        ),
    ]
    subtotal = sum(line.amount_minor for line in lines)

    night = tariff.night is not None and tariff.night.covers(at_t, zone)
    peak_window = next((w for w in tariff.peak if w.covers(at_t, zone)), None)
    surcharge = _surcharge(tariff, night, peak_window, subtotal, money)
    if surcharge is not None:
        lines.append(surcharge)

    total = sum(line.amount_minor for line in lines)
    if tariff.cap is not None and total > (cap := money.minor(_exact(tariff.cap))):
        lines.append(FeeLine("cap", cap - total, f"capped at {money.text(cap)}"))
        total = cap
    if tariff.minimum is not None and total < (minimum := money.minor(_exact(tariff.minimum))):
        lines.append(FeeLine("minimum", minimum - total, f"minimum fee {money.text(minimum)}"))
        total = minimum

    return FeeQuote(
        total_minor=total,
        currency=tariff.currency,
        minor_digits=digits,
        tariff_version=tariff.version,
        breakdown=tuple(lines),
        local_time=local.isoformat(),
        night=night,
        peak=peak_window is not None,
    )


def _surcharge(
    tariff: Tariff,
    night: bool,
    peak_window: LocalWindow | None,
    subtotal: int,
    money: _Money,
) -> FeeLine | None:
    """The one night-or-peak line: the larger multiplier wins, night on a tie."""
    candidates: list[tuple[float, LineCode, str]] = []
    if night and tariff.night is not None:
        window = tariff.night
        candidates.append((tariff.night_multiplier, "night", f"night {window.start}-{window.end}"))
    if peak_window is not None:
        label = f"peak {_days(peak_window.days)} {peak_window.start}-{peak_window.end}"
        candidates.append((tariff.peak_multiplier, "peak", label))
    if not candidates:
        return None
    multiplier, code, label = max(candidates, key=lambda c: c[0])  # max keeps the first tie
    if multiplier <= 1.0:
        return None
    detail = f"{label}: x {multiplier:g} on {money.text(subtotal)}"
    if len(candidates) == 2:
        other = candidates[1] if code == "night" else candidates[0]
        detail += f" ({other[1]} x {other[0]:g} also applies; only the larger counts)"
    # subtotal is already in minor units: the surcharge line is rounded once, here.
    amount = _round_half_up((_exact(multiplier) - 1) * subtotal)
    return FeeLine(code, amount, detail)


class _Money:
    """Rounding to, and writing of, one currency's minor unit."""

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self.scale = 10**digits

    def minor(self, major: Fraction) -> int:
        """An exact amount in major units to minor units, half up."""
        return _round_half_up(major * self.scale)

    def text(self, minor: int) -> str:
        """Minor units as major ones: 1230 -> "12.30"."""
        sign = "-" if minor < 0 else ""
        whole, part = divmod(abs(minor), self.scale)
        return f"{sign}{whole}.{part:0{self.digits}d}" if self.digits else f"{sign}{whole}"

    def rate(self, value: float) -> str:
        """A tariff amount as written, padded to the minor unit: 0.8 -> "0.80", 0.125 kept."""
        text = _decimal_text(_exact(value))
        whole, _, part = text.partition(".")
        part = part.ljust(self.digits, "0")
        return f"{whole}.{part}" if part else whole


def _exact(value: float) -> Fraction:
    """The decimal a number was written as: repr(0.8) is "0.8", so 8/10 exactly."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _decimal_text(value: Fraction) -> str:
    """A terminating fraction as a plain decimal, no trailing zeros: 22/5 -> "4.4"."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest and len(digits) < 12:
        rest *= 10
        digit, rest = divmod(rest, value.denominator)
        digits += str(digit)
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def _km(value: Fraction) -> str:
    return _decimal_text(value)


def _minutes(seconds: int) -> str:
    """Whole seconds as minutes: 90 -> "1.5 min", 100 -> "1.67 min (100 s)" (charged exact)."""
    minutes = Fraction(seconds, 60)
    if (minutes * 100).denominator == 1:
        return f"{_decimal_text(minutes)} min"
    return f"{float(minutes):.2f} min ({seconds} s)"


def _days(days: tuple[int, ...]) -> str:
    if set(days) == set(ALL_WEEK):
        return "every day"
    return ",".join(_DAY_NAMES[day] for day in sorted(days))
