"""Piccolo tables: the stored shape of everything, and no behaviour.

Timestamps are `Timestamptz` (stored in UTC on both engines). Structured values (tags, questions,
answers, payloads) are JSON text, decoded by the domain layer, so that SQL written once reads the
same on SQLite and PostgreSQL. Uniqueness that correctness depends on is a database constraint.

The migrations make the schema from these classes. Code reads it two ways: cold paths through the
classes with Piccolo's query builder (domain/reports.py), hot paths as SQL text in the domain
(`db.fetch`), which tests/test_sql_statements.py compiles against the migrated schema on both
engines, so a renamed column fails a test that names the statement's file and line. This module
imports nothing from the app (tests/test_layering.py).
"""

from __future__ import annotations

from piccolo.columns import (
    Boolean,
    Bytea,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

# The largest id a row can have: ids are SERIAL, 32-bit signed on PostgreSQL. Ids outside
# 1..MAX_ID name no row (the edge answers 404 for them, never a database error).
MAX_ID = 2**31 - 1


class Topic(Table):
    """A mailing topic subscribers can choose: bulletin, events, careers."""

    id = Serial(primary_key=True)
    slug = Varchar(length=64, unique=True)
    name = Varchar(length=200)
    description = Text(default="")


class StaffUser(Table):
    id = Serial(primary_key=True)
    email = Varchar(length=320, unique=True)
    name = Varchar(length=200, default="")
    password_hash = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    failed_logins = Integer(default=0)  # failed logins in a row; slows the next attempts
    last_failed_login_at = Timestamptz(null=True, default=None)
    password_changed_at = Timestamptz(null=True, default=None)  # ends older sessions


class ApiToken(Table):
    """A bearer token for the staff API; only its SHA-256 is kept."""

    id = Serial(primary_key=True)
    staff = ForeignKey(StaffUser, null=False)
    label = Varchar(length=200, default="")
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class StaffSession(Table):
    """A signed-in browser: only the SHA-256 of the session cookie's value is kept."""

    id = Serial(primary_key=True)
    staff = ForeignKey(StaffUser, null=False)
    token_hash = Varchar(length=64, unique=True)
    user_agent = Varchar(length=300, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()


class AuditEntry(Table):
    """Who did what to which object, and when: one row per staff action that changes something."""

    id = Serial(primary_key=True)
    staff = ForeignKey(StaffUser, null=True, default=None)  # null: the system or the CLI
    action = Varchar(length=64)  # e.g. event.create, event.publish, issue.release
    subject_type = Varchar(length=32, default="")  # event | issue | registration | staff | ...
    subject_id = Integer(null=True, default=None)
    summary = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Event(Table):
    id = Serial(primary_key=True)
    slug = Varchar(length=120, unique=True)
    title = Varchar(length=300)
    summary = Text(default="")
    description = Text(default="")  # Markdown
    audience = Text(default="")
    tags = Text(default="[]")  # JSON list of strings
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    timezone = Varchar(length=64)
    capacity = Integer(null=True, default=None)  # null: unlimited
    taken = Integer(default=0)  # seats held by registered people
    join_url = Text(default="")
    registration_closes_at = Timestamptz(null=True, default=None)
    questions = Text(default="[]")  # JSON list of question objects
    reminders = Text(default="[1440, 60]")  # JSON list of minutes before the start
    recording_url = Text(default="")  # recording or resources, sent in the follow-up
    doors_open_minutes = Integer(default=15)  # the join link opens this long before the start
    follow_up_minutes = Integer(default=120)  # the follow-up goes this long after the end
    status = Varchar(length=16, default="draft")  # draft | published | cancelled
    version = Integer(default=1)  # grows on every change; caches and invites key on it
    # Registrants' personal data (name, address, answers) is purged this many days after the
    # end; null: the installation's default (EVENTS_RETENTION_DAYS).
    retention_days = Integer(null=True, default=None)
    purged_at = Timestamptz(null=True, default=None)  # when that purge ran
    # The public calendar entry's UID: random, stored, never derived from the id or the host, so a
    # second database behind the same address never reuses one ("" until first needed).
    calendar_uid = Varchar(length=64, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    # The page people judge (issue 14): a cover picture (an absolute URL, or /media/<digest>.<ext>
    # for one uploaded in the workspace) with its alternative text; hosts and speakers as a JSON
    # list of {name, role, bio, photo_url}; whether the page shows "N registered"; the note
    # staff wrote when cancelling (shown on the page and in the cancellation email).
    cover_image_url = Text(default="")
    cover_alt = Text(default="")
    speakers = Text(default="[]")
    show_registered_count = Boolean(default=False)
    cancellation_note = Text(default="")


class Registration(Table):
    id = Serial(primary_key=True)
    event = ForeignKey(Event, null=False)
    email = Varchar(length=320)  # lower-cased
    name = Varchar(length=200)
    answers = Text(default="{}")  # JSON object keyed by question key
    status = Varchar(length=16)  # registered | waitlisted | cancelled
    token_salt = Varchar(length=32)  # link tokens are derived from it (events_app/tokens.py)
    sequence = Integer(default=0)  # iCalendar SEQUENCE: only grows
    subscribe = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    cancelled_at = Timestamptz(null=True, default=None)
    promoted_at = Timestamptz(null=True, default=None)
    confirmation_sent_at = Timestamptz(null=True, default=None)
    attended_at = Timestamptz(null=True, default=None)
    # The invite's UID: random and stored for the life of the registration ("" until first needed);
    # a new registration after a cancel gets a new one.
    calendar_uid = Varchar(length=64, default="")
    # The attendee's answer to the invite (iMIP REPLY): "" | accepted | tentative | declined.
    rsvp = Varchar(length=16, default="")
    rsvp_at = Timestamptz(null=True, default=None)

    # (event, email) is unique: a unique index made by the first migration.


class ScheduledSend(Table):
    """Ledger of time-triggered messages already queued (reminders, follow-ups): one row per
    (registration, kind, key), unique, so that however many workers look, each is queued once.
    A reminder's key holds the start time it was for: after a reschedule it is due again."""

    id = Serial(primary_key=True)
    registration = ForeignKey(Registration, null=False)
    kind = Varchar(length=32)
    key = Varchar(length=80)
    created_at = Timestamptz(default=TimestamptzNow())

    # (registration, kind, key) is unique: a unique index made by the index migration.


class Subscriber(Table):
    """A person on the mailing list. Erasure blanks the personal data and keeps `email_hash`
    (SHA-256 of the address) so that an import cannot quietly add the address again."""

    id = Serial(primary_key=True)
    email = Varchar(length=320, null=True, unique=True)  # lower-cased; null once erased
    email_hash = Varchar(length=64, unique=True)
    name = Varchar(length=200, default="")
    status = Varchar(length=16, default="pending")  # pending | confirmed | unsubscribed | erased
    token_salt = Varchar(length=32)  # link tokens are derived from it (events_app/tokens.py)
    source = Varchar(length=32, default="form")  # form | api | registration | import
    created_at = Timestamptz(default=TimestamptzNow())
    confirm_sent_at = Timestamptz(null=True, default=None)
    confirmed_at = Timestamptz(null=True, default=None)
    paused_until = Timestamptz(null=True, default=None)
    unsubscribed_at = Timestamptz(null=True, default=None)
    erased_at = Timestamptz(null=True, default=None)
    bounced_at = Timestamptz(null=True, default=None)  # a 5xx refusal: no more bulk mail
    bounce_reason = Text(default="")
    soft_bounces = Integer(default=0)  # temporary delivery failures reported by DSN, in a row
    complained_at = Timestamptz(null=True, default=None)  # a spam complaint (ARF): no more mail
    link_sent_at = Timestamptz(null=True, default=None)  # last "email me my link"
    # An opt-in asked for while unsubscribed or erased: JSON list of topic ids that the owner's
    # confirmation will apply. Until then the opt-out stands ("" or "[]": none asked for).
    requested_topics = Text(default="")


class LoginAttempt(Table):
    """Failed sign-ins per address, known or not, in one shared place (every process, and across
    restarts), so that the throttle answers alike for an account and for none. `key` is the
    SHA-256 of the lower-cased address; an attempt is claimed by one atomic UPDATE."""

    id = Serial(primary_key=True)
    key = Varchar(length=64, unique=True)
    failures = Integer(default=0)
    last_failed_at = Timestamptz(null=True, default=None)


class Subscription(Table):
    """Which topics a subscriber receives; (subscriber, topic) unique via the index migration."""

    id = Serial(primary_key=True)
    subscriber = ForeignKey(Subscriber, null=False)
    topic = ForeignKey(Topic, null=False)
    created_at = Timestamptz(default=TimestamptzNow())


class Issue(Table):
    """One issue of a bulletin ("October 2019"): Markdown body, released to a topic's subscribers.
    draft -> scheduled (release_at in the future) -> released."""

    id = Serial(primary_key=True)
    slug = Varchar(length=120, unique=True)
    title = Varchar(length=300)
    issue_date = Varchar(length=10)  # ISO date, YYYY-MM-DD
    summary = Text(default="")
    body = Text(default="")  # Markdown, sanitised when rendered
    topic = ForeignKey(Topic, null=False)
    status = Varchar(length=16, default="draft")  # draft | scheduled | released
    release_at = Timestamptz(null=True, default=None)
    released_at = Timestamptz(null=True, default=None)
    version = Integer(default=1)
    uid = Varchar(length=64, default="")  # random and stored: the Atom entry id, whatever the slug
    created_by = ForeignKey(StaffUser, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class IssueAlias(Table):
    """An issue's earlier slug: its old archive address redirects to the issue's current one."""

    id = Serial(primary_key=True)
    slug = Varchar(length=120, unique=True)
    issue = ForeignKey(Issue, null=False)
    created_at = Timestamptz(default=TimestamptzNow())


class InboundMessage(Table):
    """A message read by `events-app inbound`: one row per message key (its Message-ID, or a
    digest of it), unique, so that the same message delivered twice acts once."""

    id = Serial(primary_key=True)
    key = Varchar(length=128, unique=True)
    kind = Varchar(length=32, default="")  # unsubscribe | dsn | complaint | reply | ignored
    outcome = Text(default="")
    received_at = Timestamptz(default=TimestamptzNow())


class Mailing(Table):
    """One bulk send (an issue's release or an event announcement) to the subscribers of some
    topics as they were at `release_at`. Its ledger is the outbox: one row per (mailing,
    subscriber), unique. scheduled -> sending -> done; `paused_until` holds it back."""

    id = Serial(primary_key=True)
    kind = Varchar(length=16)  # issue | announcement
    issue = ForeignKey(Issue, null=True, default=None)
    event = ForeignKey(Event, null=True, default=None)
    topics = Text(default="[]")  # JSON list of topic ids
    status = Varchar(length=16, default="scheduled")  # scheduled | sending | done
    release_at = Timestamptz()
    expanded_at = Timestamptz(null=True, default=None)  # every recipient has a ledger row
    paused_until = Timestamptz(null=True, default=None)
    pause_reason = Text(default="")
    created_by = ForeignKey(StaffUser, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class Outbox(Table):
    """One message to send. Written in the transaction of the change that causes it; the worker
    renders and sends it. queued -> sending -> sent | failed."""

    id = Serial(primary_key=True)
    kind = Varchar(length=64)
    recipient = Varchar(length=320)
    payload = Text(default="{}")  # JSON: ids and what changed; rendered by the worker
    status = Varchar(length=16, default="queued")
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    claimed_at = Timestamptz(null=True, default=None)
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
    # Bulk mail only: the ledger key. (mailing, subscriber) is unique (index migration).
    mailing = Integer(null=True, default=None)
    subscriber = Integer(null=True, default=None)


class OrgSettings(Table, tablename="org_settings"):
    """The organisation's identity, set by staff in the workspace's Settings: one row (id 1) at
    most. An empty value means the first default (EVENTS_ORG_NAME for the name; nothing for the
    rest). `version` grows on every change: cached pages key on it."""

    id = Serial(primary_key=True)
    organisation_name = Varchar(length=200, default="")
    logo_url = Text(default="")  # absolute URL, or /media/<digest>.<ext> for an uploaded logo
    accent_colour = Varchar(length=7, default="")  # #rrggbb
    website = Text(default="")
    reply_to = Varchar(length=320, default="")
    postal_address = Text(default="")  # the bulk-mail footer's postal address (CASL, CAN-SPAM)
    version = Integer(default=1)
    updated_at = Timestamptz(default=TimestamptzNow())


class Image(Table):
    """An uploaded picture (event cover, speaker photo, logo), kept in the database so that every
    process serves it. `digest` (SHA-256 of the stored bytes) names it in its URL, so it can be
    cached for ever. A resized copy (for phones) has its own row, with `source` the digest of the
    original and `width` its width."""

    id = Serial(primary_key=True)
    digest = Varchar(length=64, unique=True)
    source = Varchar(length=64, default="")  # "" for an original
    content_type = Varchar(length=64)
    width = Integer(default=0)
    height = Integer(default=0)
    data = Bytea()
    created_at = Timestamptz(default=TimestamptzNow())


ALL_TABLES: list[type[Table]] = [
    Topic,
    StaffUser,
    ApiToken,
    StaffSession,
    AuditEntry,
    Event,
    Registration,
    ScheduledSend,
    Subscriber,
    Subscription,
    Issue,
    IssueAlias,
    Mailing,
    Outbox,
    LoginAttempt,
    InboundMessage,
    OrgSettings,
    Image,
]
