"""Tokens in links: unguessable, one purpose each, never stored.

A registration's link token is `<row id>.<MAC>`, the MAC being HMAC-SHA256(secret key, purpose +
row id + a random 128-bit per-row salt): 256 bits nobody can compute without both the secret key
and the database. The database keeps only the salt, so a leaked database opens no link, while the
worker can put the same link into a re-sent confirmation. Verifying finds the row by its primary
key and recomputes the MAC (constant-time compare): no index on random keys, which would cost a
WAL page per registration on every commit. Rotating the secret key retires every link already
sent. API tokens are random and kept as SHA-256 hashes (`digest`).

An email address, where it must be recognised without being kept (an erased subscriber, the
unique key of every subscriber, the sign-in throttle), is kept as `email_hash`: one function, so
every place computes the same fingerprint of the same address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache

from .tables import MAX_ID


def new_salt() -> str:
    return secrets.token_hex(16)


def new_salt_and_uuid() -> tuple[str, str]:
    """(`new_salt()`, `uuid.uuid4().hex`) from one read of the system's random source, for a new
    registration, which needs both: 128 random bits as 32 hex digits, and a random UUID's 32 hex
    digits (122 random bits, the version and variant bits set as uuid4 sets them)."""
    raw = bytearray(os.urandom(32))
    raw[22] = raw[22] & 0x0F | 0x40  # version 4
    raw[24] = raw[24] & 0x3F | 0x80  # variant RFC 4122
    return raw[:16].hex(), raw[16:].hex()


@lru_cache(maxsize=4)
def _keyed(secret_key: str) -> hmac.HMAC:
    # Keying an HMAC costs two hash blocks; copying a keyed one costs nothing (hot path).
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def derive(secret_key: str, purpose: str, row_id: int | str, salt: str) -> str:
    mac = _keyed(secret_key).copy()
    mac.update(f"{purpose}:{row_id}:{salt}".encode())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def link(secret_key: str, purpose: str, row_id: int, salt: str) -> str:
    """The token for a row's link of one purpose."""
    return f"{row_id}.{derive(secret_key, purpose, row_id, salt)}"


def link_row_id(token: str) -> int | None:
    """The row id a link token claims, or None for a malformed token (check with `link_matches`)."""
    head, dot, mac = token.partition(".")
    if not dot or not head.isascii() or not head.isdigit() or len(head) > 10 or len(mac) != 43:
        return None
    row_id = int(head)
    return row_id if 0 < row_id <= MAX_ID else None


def link_matches(token: str, secret_key: str, purpose: str, row_id: int | None, salt: str) -> bool:
    """True when `token` is the link for (purpose, row, salt); never for a token without a row id."""
    if row_id is None:
        return False
    return hmac.compare_digest(token.encode(), link(secret_key, purpose, row_id, salt).encode())


def digest(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def email_hash(address: str) -> str:
    """The one-way fingerprint of an email address: SHA-256 (hex) of the address trimmed and
    lower-cased, as domain/validation.email spells it. Any text is accepted (an unchecked sign-in
    field included: a lone surrogate is hashed, not refused)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


def new_random() -> str:
    """A fresh random token (API tokens, shown once)."""
    return secrets.token_urlsafe(32)
