"""Addresses that carry a tag back to us: the envelope sender of each message (VERP, so a bounce
names the outbox row it is about) and the `mailto:` of List-Unsubscribe (so an unsubscribe mail
names its subscriber even when a client strips the subject).

Both are built on the return path (`EVENTS_RETURN_PATH`, default the From address) with a
sub-address: `local+<kind>-<value>-<mac>@domain`. The MAC (HMAC-SHA256 under the secret key, 10
hex characters) makes the tags unforgeable, so a made-up bounce or unsubscribe mail cannot act
on someone else's row. `parse` reads any address back and returns (kind, value) or None.

Kinds: `b` a bounce address for outbox row `value`; `u` an unsubscribe address for the manage
token `value` (which is itself a capability; the MAC only keeps the address well-formed and ours).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .. import settings

_TAG = re.compile(r"^(?P<local>[^+@]+)\+(?P<kind>[bu])-(?P<value>[A-Za-z0-9._-]+)-(?P<mac>[0-9a-f]{10})@(?P<domain>.+)$")


def _mac(kind: str, value: str) -> str:
    key = settings.get().secret_key.encode()
    return hmac.new(key, f"verp:{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:10]


def _tagged(kind: str, value: str) -> str:
    local, _, domain = settings.get().return_path.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{kind}-{value}-{_mac(kind, value)}@{domain}"


def bounce_address(outbox_id: int) -> str:
    """The envelope sender for outbox row `outbox_id`: a bounce to it names the row."""
    return _tagged("b", str(outbox_id))


def unsubscribe_address(manage_token: str) -> str:
    """The List-Unsubscribe `mailto:` address for the subscriber whose manage token this is."""
    return _tagged("u", manage_token)


def parse(address: str) -> tuple[str, str] | None:
    """(kind, value) for an address this installation tagged, else None (foreign, or forged)."""
    found = _TAG.match((address or "").strip().strip("<>"))
    if not found:
        return None
    kind, value = found["kind"], found["value"]
    if not hmac.compare_digest(found["mac"], _mac(kind, value)):
        return None
    return kind, value
