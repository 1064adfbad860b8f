"""Mail headers and single-line text from untrusted input (names, titles, stored addresses).

Every header built from someone's data goes through `email.headerregistry`: an `Address` with a
display name, folded by the standard library. A display name is first reduced to a safe phrase:
one line, no control characters, at most `NAME_LIMIT` characters, and none of the RFC 5322
specials that need quoting (`, ; : < > @ " \\ ( ) [ ] .`, each becomes a space). The last is not
cosmetic: Python 3.11's folder drops the quotes around a quoted display name that it has to split
across lines, so `"Smith, evil@attacker.example, ..." <ada@example.com>` went out as three
recipients (CPython gh-80222, fixed only in later versions), and `"J. Smith"` as obsolete syntax
that Python's own parser cannot read. A phrase with nothing to quote cannot come apart.

An address that cannot be written into a header (control characters, spaces, no `@`, a
non-ASCII local part, which would need SMTPUTF8) raises `BadAddress`: the message can never be
built, and the worker fails it once with the reason. An internationalised domain is written in
its ASCII (IDNA) form, which every server accepts.

Bulk mail (mail/bulk.py) writes its MIME by hand for speed: `to_line()` gives it a folded `To:`
line. For the common case (a plain ASCII name and address that fit on one line) it writes the
line directly, which is exactly what the header registry would produce (tests/security/
test_mail_door.py checks the two agree); anything else goes through the registry.
"""

from __future__ import annotations

import re
from email import policy as email_policy
from email.headerregistry import Address
from functools import lru_cache

NAME_LIMIT = 100
# C0 and C1 controls, DEL, and Unicode line/paragraph separators and bidirectional overrides.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")
_SPECIALS = re.compile(r'[,;:<>@"\\()\[\].]+')
# Bulk messages are joined with "\n"; the transport turns them into CRLF on the wire.
BULK_POLICY = email_policy.default  # utf8=False: non-ASCII becomes RFC 2047 encoded words

# A header line the registry would write unchanged: plain name, plain address, short enough.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'_-]+(?: [A-Za-z0-9'_-]+)*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PLAIN_LIMIT = BULK_POLICY.max_line_length


class BadAddress(ValueError):
    """The address cannot be written into a mail header; no retry will change that."""


def single_line(text: str | None, limit: int | None = NAME_LIMIT) -> str:
    """`text` on one line: control characters and line breaks become spaces, runs of white
    space one space, cut to `limit` characters (None: no cut). Used for names in bodies too."""
    line = _SPACES.sub(" ", _BREAKS.sub(" ", text or "")).strip()
    if limit is not None and len(line) > limit:
        line = line[:limit].rstrip()
    return line


def _no_encoded_words(text: str) -> str:
    # Literal "=?...?=" in a name or title would be decoded by readers as RFC 2047 (showing
    # other text than the one stored); a space after the "=" keeps it literal.
    return text.replace("=?", "= ?")


def safe_phrase(name: str | None) -> str:
    """A display name that needs no quoting: single line, specials replaced by spaces, no
    encoded-word markers."""
    return single_line(_no_encoded_words(_SPECIALS.sub(" ", single_line(name, None))))


def address(name: str | None, addr: str) -> Address:
    """The recipient `name <addr>` as a header registry Address; BadAddress when `addr` cannot
    be written into a header."""
    addr = addr or ""
    if _BREAKS.search(addr) or any(c.isspace() for c in addr):
        raise BadAddress("the address holds control characters or spaces")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise BadAddress("the address has no local part or no domain")
    if not local.isascii():
        raise BadAddress("the address has non-ASCII characters before the @ (that needs SMTPUTF8, not used here)")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise BadAddress("the address's domain is not a valid internationalised domain name") from None
    try:
        return Address(display_name=safe_phrase(name), addr_spec=f"{local}@{domain}")
    except (ValueError, IndexError) as exc:  # the header parser's own verdict on the addr-spec
        raise BadAddress(f"the address is not valid in a mail header ({single_line(str(exc), 120)})") from None


@lru_cache(maxsize=8)
def sender(mail_from: str) -> Address:
    """The From address of the EVENTS_MAIL_FROM setting, its display name reduced like any other
    (an organisation's name with a comma must stay one sender when folded)."""
    parsed = BULK_POLICY.header_factory("From", mail_from)
    if len(parsed.addresses) != 1:
        raise BadAddress("EVENTS_MAIL_FROM must hold exactly one address")
    found = parsed.addresses[0]
    return address(found.display_name, found.addr_spec)


def fold(name: str, value) -> str:
    """One header, `Name: value`, folded by the registry with "\\n" line ends and no final one.
    `value` is a string (unstructured headers) or an Address."""
    return BULK_POLICY.header_factory(name, value).fold(policy=BULK_POLICY).rstrip("\n")


def subject(text: str) -> str:
    """A subject on one line, whole (titles are not cut), with no encoded-word markers."""
    return _no_encoded_words(single_line(text, None))


def to_line(name: str | None, addr: str) -> tuple[str, str]:
    """(the folded `To:` header line for bulk mail, the envelope address). BadAddress when the
    address cannot be used."""
    phrase = safe_phrase(name)
    if (
        _PLAIN_ADDRESS.fullmatch(addr)
        and (not phrase or _PLAIN_NAME.fullmatch(phrase))
        and len(phrase) + len(addr) + 7 <= _PLAIN_LIMIT
    ):
        return (f"To: {phrase} <{addr}>" if phrase else f"To: {addr}"), addr
    recipient = address(phrase, addr)
    return fold("To", recipient), recipient.addr_spec


def to_line_slow(name: str | None, addr: str) -> tuple[str, str]:
    """`to_line` always through the registry (the reference the fast path is tested against)."""
    recipient = address(name, addr)
    return fold("To", recipient), recipient.addr_spec
