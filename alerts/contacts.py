"""Emergency contacts: who to reach, per person (technician or customer), when nobody reacts.

Validation is declarative: the limits are msgspec constraints on the types, so decoding and
checking are one step and nothing malformed reaches storage. The one rule a type cannot
say (a phone or a device token, at least one) is checked after.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# Ten people is more than anyone lists, and bounds the fan-out of one SOS at T2.
MAX_CONTACTS = 10
# Per contact: a person has a few devices; bounds the fan-out too (10 x 10 FCM messages).
MAX_TOKENS_PER_CONTACT = 10
MAX_NAME_CHARS = 100
MAX_RELATION_CHARS = 100
# FCM registration tokens are ~160-200 chars today; 4096 leaves room without allowing junk.
MAX_TOKEN_CHARS = 4096
# E.164: "+", a country code (never starting with 0), at most 15 digits in all. 8 digits is
# the shortest full number we accept; shorter ones are local numbers an SMS gateway rejects.
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"\S")]
Phone = Annotated[str, msgspec.Meta(pattern=E164_PATTERN)]
FcmToken = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_CHARS)]
Relation = Annotated[str, msgspec.Meta(max_length=MAX_RELATION_CHARS)]


class ContactError(ValueError):
    """Contacts refused, with a stable ``code`` for the error frame / 4xx body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EmergencyContact(msgspec.Struct, frozen=True, omit_defaults=True):
    name: Name
    phone: Phone | None = None
    fcm_tokens: Annotated[
        tuple[FcmToken, ...], msgspec.Meta(max_length=MAX_TOKENS_PER_CONTACT)
    ] = ()
    relation: Relation | None = None  # "spouse", "manager", ... shown to the operator


# The rules in words, appended to msgspec's precise but terse "Expected ... - at `$[0].phone`".
_RULES = {
    "name": f"a name is 1 to {MAX_NAME_CHARS} characters, not blank",
    "phone": "a phone number is E.164: '+' then 8 to 15 digits, e.g. +4915112345678",
    "fcm_tokens": (
        f"at most {MAX_TOKENS_PER_CONTACT} device tokens, each 1 to {MAX_TOKEN_CHARS} characters"
    ),
    "relation": f"a relation is at most {MAX_RELATION_CHARS} characters",
}

ContactList = Annotated[list[EmergencyContact], msgspec.Meta(max_length=MAX_CONTACTS)]


def validate_contacts(raw: object) -> list[EmergencyContact]:
    """Decoded JSON (a list of objects), or JSON bytes/str, to checked contacts.

    Raises ContactError: ``invalid_contacts`` when the shape or a limit is wrong (the
    message names the rule and where, e.g. ``$[0].phone``), ``contact_unreachable`` when a
    contact has neither a phone number nor a device token.
    """
    try:
        if isinstance(raw, bytes | bytearray | memoryview | str):
            contacts = msgspec.json.decode(raw, type=ContactList)
        else:
            contacts = msgspec.convert(raw, type=ContactList)
    except msgspec.ValidationError as exc:
        message = f"invalid emergency contacts: {exc}"
        field = re.search(r"\.(\w+)(?:\[\d+\])?`$", str(exc))
        if field and field[1] in _RULES:
            message += f" ({_RULES[field[1]]})"
        elif str(exc).startswith("Expected `array` of length"):
            message += f" (at most {MAX_CONTACTS} contacts)"
        raise ContactError("invalid_contacts", message) from None
    except msgspec.DecodeError as exc:
        raise ContactError("invalid_contacts", f"emergency contacts are not JSON: {exc}") from None
    for i, contact in enumerate(contacts):
        if contact.phone is None and not contact.fcm_tokens:
            raise ContactError(
                "contact_unreachable",
                f"emergency contact {contact.name!r} (at $[{i}]) needs a phone number "
                "or at least one FCM device token",
            )
    return contacts
