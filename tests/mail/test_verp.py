"""VERP and unsubscribe addresses read back to what they were made from, and nothing else."""

from hypothesis import given
from hypothesis import strategies as st

from events_app.mail import verp


@given(st.integers(min_value=1, max_value=2**31 - 1))
def test_a_bounce_address_names_its_row(outbox_id):
    address = verp.bounce_address(outbox_id)
    assert address.endswith("@example.org") and address.startswith("events+b-")
    assert verp.parse(address) == ("b", str(outbox_id))
    assert verp.parse(f"<{address}>") == ("b", str(outbox_id))
    assert verp.parse(address.upper()) == ("b", str(outbox_id))


@given(st.from_regex(r"[0-9]{1,9}\.[A-Za-z0-9_-]{43}", fullmatch=True))
def test_an_unsubscribe_address_names_its_token_whatever_the_case_and_fits_a_local_part(token):
    address = verp.unsubscribe_address(token)
    local = address.rpartition("@")[0]
    assert len(local) <= 64, "RFC 5321 limits a local part to 64 octets"
    for seen in (address, address.lower(), address.upper()):
        kind, value = verp.parse(seen)
        assert kind == "u" and verp.unsubscribe_matches(value, token)
    other = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not verp.unsubscribe_matches(verp.parse(address)[1], other), "an old address dies with its token"


def test_a_forged_or_foreign_address_names_nothing():
    real = verp.bounce_address(42)
    assert verp.parse(real.replace("+b-42-", "+b-43-")) is None
    assert verp.parse("events@example.org") is None
    assert verp.parse("someone+b-42-0123456789@example.org") is None
    assert verp.parse("") is None
