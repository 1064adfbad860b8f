"""Addresses that carry a tag back to us: the envelope sender of each message (VERP, so a bounce
names the outbox row it is about) and the `mailto:` of List-Unsubscribe (so an unsubscribe mail
names its subscriber even when a client strips the subject).

Both are built on the return path (`EVENTS_RETURN_PATH`, default the From address) with a
sub-address: `local+<kind>-<value>-<mac>@domain`. The MAC (HMAC-SHA256 under the secret key, 10
hex characters) makes the tags unforgeable, so a made-up bounce or unsubscribe mail cannot act
on someone else's row. `parse` reads any address back and returns (kind, value) or None.

Kinds: `b` a bounce address for outbox row `value`; `u` an unsubscribe address, whose value is
`<subscriber id>-<16 hex>`: a digest of the subscriber's current manage token, so the address dies
with the token (unsubscribe and erasure rotate it) and `unsubscribe_matches` checks it against the
token read from the database. Every tag is digits and lower-case hex, and short: mail systems that
lower-case local parts or cut them at RFC 5321's 64 characters leave it readable.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .. import settings

_TAG = re.compile(
    r"^(?P<local>[^+@]+)\+(?P<kind>[bu])-(?P<value>[0-9]+(?:-[0-9a-f]{16})?)-(?P<mac>[0-9a-f]{10})@(?P<domain>.+)$",
    re.IGNORECASE,
)


_KEYED: dict[str, hmac.HMAC] = {}


def _keyed() -> hmac.HMAC:
    """The HMAC state after the secret key, made once per key (bulk mail asks twice a message)."""
    key = settings.get().secret_key
    state = _KEYED.get(key)
    if state is None:
        _KEYED.clear()
        state = _KEYED[key] = hmac.new(key.encode(), digestmod=hashlib.sha256)
    return state


def _digest(text: str) -> str:
    state = _keyed().copy()
    state.update(text.encode())
    return state.hexdigest()


def _mac(kind: str, value: str) -> str:
    return _digest(f"verp:{kind}:{value}")[:10]


def _tagged(kind: str, value: str) -> str:
    local, _, domain = settings.get().return_path.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{kind}-{value}-{_mac(kind, value)}@{domain}"


def bounce_address(outbox_id: int) -> str:
    """The envelope sender for outbox row `outbox_id`: a bounce to it names the row."""
    return _tagged("b", str(outbox_id))


def _token_digest(manage_token: str) -> str:
    return _digest(f"verp-u:{manage_token}")[:16]


def unsubscribe_address(manage_token: str) -> str:
    """The List-Unsubscribe `mailto:` address for the subscriber whose manage token this is
    (`<id>.<mac>`, see tokens.link)."""
    subscriber_id = manage_token.partition(".")[0]
    return _tagged("u", f"{subscriber_id}-{_token_digest(manage_token)}")


def unsubscribe_matches(value: str, manage_token: str) -> bool:
    """Whether a parsed `u` value was made from this (current) manage token."""
    subscriber_id, _, digest = value.lower().partition("-")
    return subscriber_id == manage_token.partition(".")[0] and hmac.compare_digest(digest, _token_digest(manage_token))


def parse(address: str) -> tuple[str, str] | None:
    """(kind, value) for an address this installation tagged, else None (foreign, or forged)."""
    found = _TAG.match((address or "").strip().strip("<>"))
    if not found:
        return None
    kind, value, mac = found["kind"].lower(), found["value"].lower(), found["mac"].lower()
    if kind == "b" and "-" in value or kind == "u" and "-" not in value:
        return None
    if not hmac.compare_digest(mac, _mac(kind, value)):
        return None
    return kind, value
