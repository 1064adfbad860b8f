"""A request body is decoded once and converted once (issue 15): Litestar decodes the JSON (and
caches it on the request) and converts it into the handler's Struct in lax mode; `checked` keeps
that Struct when strict mode would give the same one, and converts strictly again only when the
JSON holds a value lax mode coerced ("5" for 5, 1 for true, 5.0 for 5). The answers stay what
they were: a coerced value is refused naming its field, a whole float is taken as an integer.
"""

from __future__ import annotations

import json
from typing import Any

import litestar._signature.model as signature_model
import litestar.connection.request as litestar_request
import msgspec
import pytest
from factories import event_data, published_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events_app.domain.errors import ValidationFailed
from events_app.web import schemas
from events_app.web.schemas import EventChange, EventIn, QuestionIn, RegistrationIn, SpeakerIn, SubscribeIn


@pytest.fixture
def counted(monkeypatch):
    """How often, during a request, JSON is decoded and decoded JSON converted into a type."""
    seen: dict[str, list] = {"decoded": [], "converted": []}
    decode, convert = litestar_request.decode_json, msgspec.convert

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        seen["decoded"].append(args[0])
        return decode(*args, **kwargs)

    def counting_convert(*args: Any, **kwargs: Any) -> Any:
        seen["converted"].append(args[1])
        return convert(*args, **kwargs)

    monkeypatch.setattr(litestar_request, "decode_json", counting_decode)
    monkeypatch.setattr(signature_model, "convert", counting_convert)
    monkeypatch.setattr(schemas.msgspec, "convert", counting_convert)
    return seen


async def test_a_registration_body_is_decoded_and_converted_once(client, counted):
    event = await published_event()
    counted["decoded"].clear(), counted["converted"].clear()
    answer = await client.post(
        f"/api/v1/events/{event['id']}/registrations",
        json={"name": "Ada Lovelace", "email": "ada@example.org", "subscribe": False, "answers": {}},
    )
    assert answer.status_code == 201, answer.text
    assert len(counted["decoded"]) == 1
    # Litestar's conversion of the handler's arguments (the body among them), and no other.
    assert len(counted["converted"]) == 1, counted["converted"]


async def test_an_event_body_is_converted_once(client, auth, counted):
    counted["decoded"].clear(), counted["converted"].clear()
    answer = await client.post("/api/v1/events", json=event_data(capacity=20, reminders=[60]), headers=auth)
    assert answer.status_code == 201, answer.text
    assert len(counted["decoded"]) == 1 and len(counted["converted"]) == 1, counted


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"subscribe": "true"}, "subscribe", "must be true or false or null"),
        ({"subscribe": 1}, "subscribe", "must be true or false or null"),
        ({"subscribe": "null"}, "subscribe", "must be true or false or null"),
    ],
)
async def test_values_lax_mode_coerces_are_still_refused_by_name(client, counted, extra, field, reason):
    event = await published_event()
    answer = await client.post(
        f"/api/v1/events/{event['id']}/registrations", json={"name": "Ada", "email": "ada@example.org", **extra}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == {field: reason}
    # Only a body holding such a value is converted a second time.
    assert len(counted["converted"]) == 2


async def test_a_whole_float_is_taken_as_an_integer(client, auth):
    answer = await client.post("/api/v1/events", json=event_data(capacity=20.0), headers=auth)
    assert answer.status_code == 201, answer.text
    assert answer.json()["capacity"] == 20
    refused = await client.post("/api/v1/events", json=event_data(capacity="20"), headers=auth)
    assert refused.status_code == 400 and "capacity" in refused.json()["errors"]


# -- the shortcut against the strict conversion, over generated bodies -------------------------

MODELS = [RegistrationIn, EventIn, EventChange, SubscribeIn, QuestionIn, SpeakerIn]
NAMES = sorted({f.encode_name for m in MODELS for f in msgspec.inspect.type_info(m).fields} | {"other"})
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 5.0, -0.0, 2.0**63, 1e300, "5", "1", "0", "true", "false", "null", "1.5", "nan", "text"]),
    st.text(max_size=6),
)
JSON = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
BODY = st.dictionaries(st.sampled_from(NAMES), JSON, max_size=6)


def _strict_outcome(raw: dict, model: type) -> Any:
    try:
        return schemas.strict(raw, model)
    except ValidationFailed as exc:
        return ("refused", exc.fields)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(MODELS), raw=BODY)
def test_the_shortcut_gives_what_strict_conversion_gives(model, raw):
    """Whenever Litestar's lax conversion accepted a body and `_agrees` says the strict one would
    give the same, it does: the same Struct, field for field (and never a refusal)."""
    raw = json.loads(json.dumps(raw))  # as decoded JSON: string keys, floats as JSON gives them
    try:
        lax = msgspec.convert(raw, model, strict=False, str_keys=True)
    except msgspec.ValidationError:
        return  # Litestar answers 400 before the handler runs
    if schemas._agrees(raw, schemas._info(model)):
        assert _strict_outcome(raw, model) == lax


@pytest.mark.parametrize(
    ("model", "raw"),
    [
        (RegistrationIn, {"name": "A", "email": "a@b.co", "subscribe": "true"}),
        (RegistrationIn, {"name": "A", "email": "a@b.co", "subscribe": 1}),
        (EventChange, {"capacity": "5"}),
        (EventChange, {"capacity": 5.0}),
        (EventChange, {"reminders": [60, "60"]}),
        (EventChange, {"questions": [{"label": "Role", "required": 0}]}),
        (EventChange, {"show_registered_count": "false"}),
    ],
)
def test_where_lax_mode_coerced_the_shortcut_is_not_taken(model, raw):
    msgspec.convert(raw, model, strict=False)  # lax mode takes it ...
    assert not schemas._agrees(raw, schemas._info(model))  # ... so strict mode decides
