"""One audited state machine, shared by the booking, incident and safety-alert cores.

Each core declares its lifecycle as its own readable table, ``(state, action) -> next state``
(like h11's ``_state.py``); this module holds the skeleton they had each written by hand:
look the step up in the table, refuse it with the core's own exception, stamp the time the
caller passes in, and hand back the new record together with exactly one audit entry, built
by the core's callback in the core's own audit struct.

Pure: no I/O and no clock. It lives in ``alerts/`` because ``realtime/booking.py`` may import
``alerts`` while ``alerts`` may not import ``realtime``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

StateT = TypeVar("StateT", bound=Enum)
ActionT = TypeVar("ActionT", bound=Enum)
RecordT = TypeVar("RecordT")
EntryT = TypeVar("EntryT")


@dataclass(frozen=True, slots=True)
class Move(Generic[StateT, ActionT]):
    """One accepted step as the core's callbacks see it: by what, from where, to where, when."""

    action: ActionT
    source: StateT | None  # None for the creation entry: the record did not exist before
    target: StateT
    t: float  # the caller's time; the machine never reads a clock


def allowed_actions(table: Mapping[tuple[StateT, ActionT], StateT], state: StateT) -> list[str]:
    """The values of the actions ``state`` allows, sorted: what a refusal message lists."""
    return sorted({action.value for (source, action) in table if source == state})


class Lifecycle(Generic[RecordT, StateT, ActionT]):
    """A transition table plus the two operations every audited record needs.

    ``state_of`` reads a record's state; ``refuse`` builds the core's exception for an
    action the table does not allow in that state. A callback may also raise (a core's
    guard, such as "resolve needs an outcome"): it runs after the table check and before
    anything is returned, so a refused step changes nothing.
    """

    def __init__(
        self,
        table: Mapping[tuple[StateT, ActionT], StateT],
        *,
        initial: StateT,
        state_of: Callable[[RecordT], StateT],
        refuse: Callable[[RecordT, ActionT], Exception],
    ) -> None:
        self.table = table
        self.initial = initial
        self._state_of = state_of
        self._refuse = refuse

    def next_state(self, state: StateT, action: ActionT) -> StateT | None:
        """Where ``action`` leads from ``state``, or None if the table does not allow it."""
        return self.table.get((state, action))

    def allowed(self, state: StateT) -> list[str]:
        """The values of the actions ``state`` allows, sorted."""
        return allowed_actions(self.table, state)

    def begin(
        self,
        action: ActionT,
        *,
        t: float,
        build: Callable[[Move[StateT, ActionT]], RecordT],
        audit: Callable[[RecordT, Move[StateT, ActionT]], EntryT],
    ) -> tuple[RecordT, EntryT]:
        """A new record in the initial state and its creation entry (``action``, at ``t``)."""
        move = Move(action=action, source=None, target=self.initial, t=t)
        record = build(move)
        return record, audit(record, move)

    def step(
        self,
        record: RecordT,
        action: ActionT,
        *,
        t: float,
        advance: Callable[[RecordT, Move[StateT, ActionT]], RecordT],
        audit: Callable[[RecordT, Move[StateT, ActionT]], EntryT],
    ) -> tuple[RecordT, EntryT]:
        """Apply ``action`` at ``t``: the new record (from ``advance``) and its audit entry.

        ``advance`` gets the current record and the move and returns the record in
        ``move.target`` with the core's own fields set; ``audit`` gets the new record and
        the move. Raises the core's exception (from ``refuse``) if the table says no.
        """
        source = self._state_of(record)
        target = self.table.get((source, action))
        if target is None:
            raise self._refuse(record, action)
        move = Move(action=action, source=source, target=target, t=t)
        new = advance(record, move)
        return new, audit(new, move)
