"""Staff forms say every problem at once, next to its field, in the field's label and plain words,
with a summary at the top linking to each field, and keep what was typed (issue 14)."""

from __future__ import annotations

import re

from events_app import db

from .conftest import audit_actions


def summary_links(html: str) -> dict[str, str]:
    box = html.split('id="error-summary"')[1].split("</div>")[0]
    return {target: re.sub(r"<[^>]+>", "", text) for target, text in re.findall(r'<a href="#([^"]+)">(.*?)</a>', box)}


async def test_issue_editor_errors_use_labels_next_to_fields(client, csrf):
    answer = await client.post("/staff/issues", data={
        "csrf_token": csrf, "title": "", "issue_date": "2019-13-45", "summary": "Kept summary", "body": "Kept *body*",
        "topic": "bulletin"})
    assert answer.status_code == 400 and await db.fetch("SELECT id FROM issue") == []
    links = summary_links(answer.text)
    assert set(links) == {"title", "issue_date"}
    assert links["issue_date"].startswith("Issue date ") and links["title"].startswith("Title ")
    assert "issue_date" not in re.sub(r'(id|href|for|name|aria-describedby)="[^"]*"', "", answer.text.split("<main")[1])
    assert re.search(r'id="issue_date" name="issue_date" value="2019-13-45" aria-invalid="true" aria-describedby="err-issue_date"', answer.text)
    assert '<p class="error" id="err-issue_date">Issue date ' in answer.text
    assert "Kept summary" in answer.text and "Kept *body*" in answer.text


async def test_release_time_errors_in_plain_words_and_the_time_kept(client, csrf):
    from .test_bulletin import make_issue

    issue_id = await make_issue(client, csrf)
    answer = await client.post(f"/staff/issues/{issue_id}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": "", "timezone": "America/Toronto"})
    assert answer.status_code == 400 and "ISO" not in answer.text
    assert summary_links(answer.text) == {"release_at": "Release at is required for a later release: choose the date and time"}
    bad = await client.post(f"/staff/issues/{issue_id}/release", data={
        "csrf_token": csrf, "when": "later", "release_at": "2020-01-01T09:00", "timezone": "America/Toronto"})
    assert 'value="2020-01-01T09:00"' in bad.text and "Release at is in the past" in bad.text


async def test_password_change_names_every_problem_at_once(client, csrf):
    answer = await client.post("/staff/account/password", data={
        "csrf_token": csrf, "current_password": "wrong", "new_password": "short", "new_password_again": "other"})
    assert answer.status_code == 400
    assert summary_links(answer.text) == {
        "current_password": "Current password is not your current password",
        "new_password": "New password must be at least 10 characters",
        "new_password_again": "New password again does not match the new password"}
    assert "staff.password" not in await audit_actions()


async def test_new_colleague_errors_at_once_with_values_kept(client, csrf):
    answer = await client.post("/staff/account/members", data={
        "csrf_token": csrf, "email": "not-an-address", "password": "short", "name": "Kept Name"})
    assert answer.status_code == 400
    assert summary_links(answer.text) == {
        "m_email": "Email must be an email address like name@example.org",
        "m_password": "First password must be at least 10 characters"}
    assert 'value="Kept Name"' in answer.text and 'value="not-an-address"' in answer.text


async def test_import_form_errors_next_to_their_fields(client, csrf):
    answer = await client.post("/staff/subscribers/import", data={"csrf_token": csrf})
    assert answer.status_code == 400 and "Nothing was imported" in answer.text
    assert '<p class="error" id="err-file">CSV file is missing' in answer.text
    assert '<p class="error" id="err-topics">Add them to needs at least one topic ticked' in answer.text
    assert 'id="file" name="file"' in answer.text and 'aria-describedby="err-file"' in answer.text


async def test_sign_in_says_which_fields_are_empty_without_spending_an_attempt(client, member):
    from .conftest import post_login

    answer = await post_login(client, email="staff@example.org", password="")
    assert answer.status_code == 400
    assert summary_links(answer.text) == {"password": "Password is required"}
    assert 'value="staff@example.org"' in answer.text and 'id="err-password">Password is required' in answer.text
    both = await post_login(client, email=" ", password="")
    assert set(summary_links(both.text)) == {"email", "password"}
    assert "staff.login" not in await audit_actions()
