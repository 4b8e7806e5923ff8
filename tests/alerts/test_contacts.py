"""Emergency contacts: decoded and checked by msgspec, refused with a stable code."""

import msgspec
import pytest

from alerts.contacts import ContactError, EmergencyContact, validate_contacts

TOKEN = "fcm-token-" + "x" * 150


def test_contact_with_a_phone_is_valid():
    raw = [{"name": "Maria", "phone": "+4915112345678", "relation": "spouse"}]
    assert validate_contacts(raw) == [
        EmergencyContact(name="Maria", phone="+4915112345678", relation="spouse")
    ]


def test_contact_with_only_device_tokens_is_valid():
    [contact] = validate_contacts([{"name": "Jon", "fcm_tokens": [TOKEN, "t2"]}])
    assert contact.phone is None and contact.fcm_tokens == (TOKEN, "t2")


def test_no_contacts_is_a_valid_empty_list():
    assert validate_contacts([]) == []


def test_json_bytes_and_text_are_accepted():
    body = b'[{"name": "Maria", "phone": "+4915112345678"}]'
    assert validate_contacts(body) == validate_contacts(body.decode())
    assert validate_contacts(body)[0].name == "Maria"


def test_unknown_fields_are_ignored_so_the_platform_can_add_some():
    [contact] = validate_contacts([{"name": "Maria", "phone": "+4915112345678", "email": "m@x"}])
    assert contact == EmergencyContact(name="Maria", phone="+4915112345678")


def test_contacts_round_trip_through_json_without_empty_fields():
    contacts = validate_contacts([{"name": "Maria", "phone": "+4915112345678"}])
    assert msgspec.json.encode(contacts) == b'[{"name":"Maria","phone":"+4915112345678"}]'


@pytest.mark.parametrize("phone", ["+12345678", "+123456789012345", "+4915112345678"])
def test_e164_phone_numbers_are_accepted(phone):
    assert validate_contacts([{"name": "A", "phone": phone}])[0].phone == phone


@pytest.mark.parametrize(
    "phone",
    [
        "015112345678",  # no "+": a local number
        "+1234567",  # 7 digits: too short
        "+1234567890123456",  # 16 digits: longer than E.164 allows
        "+49 151 12345678",  # spaces
        "+49-151-12345678",
        "+0123456789",  # country codes never start with 0
        "",
    ],
)
def test_phone_numbers_that_are_not_e164_are_refused(phone):
    with pytest.raises(ContactError, match=r"\$\[0\]\.phone.*E\.164") as refused:
        validate_contacts([{"name": "A", "phone": phone}])
    assert refused.value.code == "invalid_contacts"


def test_contact_without_phone_or_token_is_unreachable():
    with pytest.raises(ContactError, match=r"'Maria' \(at \$\[1\]\) needs a phone") as refused:
        validate_contacts([{"name": "A", "phone": "+4915112345678"}, {"name": "Maria"}])
    assert refused.value.code == "contact_unreachable"


def test_at_most_ten_contacts():
    contact = {"name": "A", "phone": "+4915112345678"}
    assert len(validate_contacts([contact] * 10)) == 10
    with pytest.raises(ContactError, match="at most 10 contacts") as refused:
        validate_contacts([contact] * 11)
    assert refused.value.code == "invalid_contacts"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_name_must_be_present_and_at_most_100_chars(name):
    with pytest.raises(ContactError, match=r"\$\[0\]\.name") as refused:
        validate_contacts([{"name": name, "phone": "+4915112345678"}])
    assert refused.value.code == "invalid_contacts"


def test_name_of_100_chars_is_fine():
    assert validate_contacts([{"name": "x" * 100, "fcm_tokens": ["t"]}])[0].name == "x" * 100


def test_missing_name_is_refused():
    with pytest.raises(ContactError, match="missing required field `name`"):
        validate_contacts([{"phone": "+4915112345678"}])


@pytest.mark.parametrize("token", ["", "x" * 4097])
def test_tokens_must_be_non_empty_and_at_most_4096_chars(token):
    with pytest.raises(ContactError, match=r"\$\[0\]\.fcm_tokens\[0\]") as refused:
        validate_contacts([{"name": "A", "fcm_tokens": [token]}])
    assert refused.value.code == "invalid_contacts"


def test_token_of_4096_chars_is_fine():
    assert validate_contacts([{"name": "A", "fcm_tokens": ["x" * 4096]}])


def test_at_most_ten_tokens_per_contact():
    with pytest.raises(ContactError, match=r"\$\[0\]\.fcm_tokens`"):
        validate_contacts([{"name": "A", "fcm_tokens": [f"t{i}" for i in range(11)]}])


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "A", "phone": "+4915112345678"},  # an object, not a list
        ["Maria"],
        [{"name": "A", "phone": 4915112345678}],
        [{"name": "A", "fcm_tokens": "one-token"}],
        None,
    ],
)
def test_wrong_shapes_are_refused(raw):
    with pytest.raises(ContactError) as refused:
        validate_contacts(raw)
    assert refused.value.code == "invalid_contacts"


def test_bytes_that_are_not_json_are_refused():
    with pytest.raises(ContactError, match="not JSON") as refused:
        validate_contacts(b"[{")
    assert refused.value.code == "invalid_contacts"
