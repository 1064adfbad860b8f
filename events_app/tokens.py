"""Tokens in links: random, one purpose each, stored only as hashes.

A link token is HMAC-SHA256(secret key, purpose + row id + a random per-row salt), 256 bits that
nobody can compute without both the secret key and the database. The database keeps only the
SHA-256 of the token (for lookup) and the salt, so a leaked database gives no working link, while
the worker can put the same link into a re-sent confirmation. Rotating the secret key retires
every link already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache


def new_salt() -> str:
    return secrets.token_hex(16)


@lru_cache(maxsize=4)
def _keyed(secret_key: str) -> "hmac.HMAC":
    # Keying an HMAC costs two hash blocks; copying a keyed one costs nothing (hot path).
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def derive(secret_key: str, purpose: str, row_id: int | str, salt: str) -> str:
    mac = _keyed(secret_key).copy()
    mac.update(f"{purpose}:{row_id}:{salt}".encode())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def digest(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_random() -> str:
    """A fresh random token (API tokens, shown once)."""
    return secrets.token_urlsafe(32)
