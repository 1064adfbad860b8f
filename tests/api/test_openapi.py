"""The API's own description (/schema/openapi.json) says what every operation takes and answers:
a generated client or a checker can rely on it, not only the prose. Schemathesis
(tests/security/test_schemathesis.py) checks the answers against it; this checks that there is
something to check: every body and every answer has a schema, JSON ones by name."""

from __future__ import annotations

from factories import event_data

METHODS = ("get", "post", "put", "patch", "delete")


async def _document(client) -> dict:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def _resolve(document: dict, schema: dict) -> dict:
    for wrapped in schema.get("allOf", []) + schema.get("oneOf", []):
        if "$ref" in wrapped:
            schema = wrapped
    ref = schema.get("$ref")
    if ref:
        return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def _named(schema: dict) -> bool:
    """A named component, or a list of them."""
    if "$ref" in schema:
        return schema["$ref"].startswith("#/components/schemas/")
    if schema.get("type") == "array":
        return _named(schema.get("items", {}))
    return any(_named(s) for s in schema.get("oneOf", []) + schema.get("allOf", []) if s.get("type") != "null")


async def test_every_operation_documents_its_answers_with_named_schemas(client):
    document = await _document(client)
    operations = dict(_operations(document))
    assert len(operations) >= 29, sorted(operations)
    assert "GET /health" in operations and "POST /api/v1/events/{event_id}/registrations" in operations
    for name, operation in operations.items():
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert success, name
        for code in success:
            content = operation["responses"][code].get("content")
            assert content, (name, code)
            for media, body in content.items():
                schema = body.get("schema") or {}
                assert schema, (name, code, media, "no schema")
                if media == "application/json":
                    assert _named(schema), (name, code, schema)
                    resolved = _resolve(document, schema)
                    assert resolved.get("properties") or resolved.get("type") == "array", (name, resolved)
                else:
                    assert schema.get("type") == "string", (name, media, schema)
        # The error answers the app gives are documented with their shape.
        if name != "GET /health":
            for code in ("400", "404", "503"):
                error = operation["responses"][code]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/Problem"}, (name, code, error)


async def test_every_operation_taking_a_body_documents_it(client):
    document = await _document(client)
    with_body = 0
    for name, operation in _operations(document):
        method = name.split()[0]
        if "requestBody" not in operation:
            continue
        with_body += 1
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert _named(schema), (name, schema)
        assert _resolve(document, schema).get("properties"), name
        assert method in ("POST", "PATCH"), name
    # create/change/preview events, register, announce, subscribe, create/change/test/release/retry
    # issues, and change settings
    assert with_body == 12, with_body


async def test_no_answer_is_an_object_without_properties_and_components_say_their_limits(client):
    document = await _document(client)
    schemas = document["components"]["schemas"]
    assert {"Event", "EventIn", "EventChange", "Registration", "RegistrationIn", "Issue", "Problem"} <= set(schemas)
    for name, schema in schemas.items():
        if schema.get("type") == "object":
            assert schema.get("properties"), name
    event_in = schemas["EventIn"]
    assert set(event_in["required"]) == {"title", "starts_at", "ends_at", "timezone"}
    assert event_in["properties"]["title"]["maxLength"] == 300
    assert event_in["properties"]["capacity"]["minimum"] == 0
    assert "status" not in schemas["EventChange"].get("required", [])
    assert schemas["EventChange"].get("required", []) == []
    # Staff operations name the bearer token; the public ones do not.
    scheme = document["components"]["securitySchemes"]["BearerToken"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    operations = dict(_operations(document))
    assert operations["POST /api/v1/events"]["security"] == [{"BearerToken": []}]
    assert "security" not in operations["POST /api/v1/events/{event_id}/registrations"]


async def test_a_body_of_the_wrong_shape_is_refused_by_name_with_a_readable_reason(client, auth):
    cases = [
        ({"title": 5}, "title", "must be a string"),
        ({"capacity": "5"}, "capacity", "must be a whole number or null"),
        ({"capacity": -1}, "capacity", "must be at least 0"),
        ({"title": "x" * 301}, "title", "must have at most 300 characters"),
        ({"colour": "blue"}, "colour", "is not a field of this request"),
        ({"status": "cancelled"}, "status", "is not one of the allowed values"),
        ({"questions": [{"label": "Pick", "type": "dropdown"}]}, "questions[0].type", "is not one of the allowed values"),
        ({"reminders": ["soon"]}, "reminders", "must be a whole number"),
    ]
    for override, field, reason in cases:
        answer = await client.post("/api/v1/events", json=event_data(**override), headers=auth)
        assert answer.status_code == 400, (override, answer.text)
        assert answer.json() == {"status_code": 400, "detail": "Invalid input", "errors": {field: reason}}, override
    missing = await client.post("/api/v1/events", json={"title": "No times"}, headers=auth)
    assert missing.status_code == 400 and set(missing.json()["errors"]) <= {"starts_at", "ends_at", "timezone"}
    assert list(missing.json()["errors"].values()) == ["is required"]
    for body in ("[1, 2]", '"text"'):
        answer = await client.post("/api/v1/events", content=body, headers={**auth, "Content-Type": "application/json"})
        assert answer.json()["errors"] == {"body": "must be a JSON object"}, body


async def test_a_change_passes_only_the_fields_sent(client, auth):
    created = (await client.post("/api/v1/events", json=event_data(capacity=5, summary="Kept"), headers=auth)).json()
    changed = await client.patch(f"/api/v1/events/{created['id']}", json={"capacity": None}, headers=auth)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["capacity"] is None and body["summary"] == "Kept" and body["title"] == created["title"]
    assert body["doors_open_minutes"] == created["doors_open_minutes"] and body["notified"] == 0
