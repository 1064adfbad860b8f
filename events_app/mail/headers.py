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

Folding is ours, not the standard library's (`fold_text`, `fold_address`, and `MAIL_POLICY`,
which writes every From, To and Subject of a transactional message through them): Python
3.11's folder loses or doubles spaces around encoded words in non-ASCII subjects and names.
The rule is simple enough to be exact: a value of plain ASCII words is folded at its spaces; any
other value is written whole as RFC 2047 "B" encoded words (UTF-8), split between characters
and sized to the room left on the line. Spaces between encoded words are dropped by readers, so
every space of the text is inside an encoded word and comes back exactly. Every line is at most
78 characters (RFC 5322), CRLF-terminated, for all our headers except an address or URL that is
itself longer (never split: it would not survive).

Bulk mail (mail/bulk.py) writes its MIME by hand for speed: `to_line()` gives it a folded `To:`
line. For the common case (a plain ASCII name and address that fit on one line) it writes the
line directly, which is exactly what the header registry would produce (tests/security/
test_mail_door.py checks the two agree); anything else goes through the registry.
"""

from __future__ import annotations

import base64
import re
from email import policy as email_policy
from email.headerregistry import Address
from email.policy import EmailPolicy
from functools import lru_cache

NAME_LIMIT = 100
# C0 and C1 controls, DEL, and Unicode line/paragraph separators and bidirectional overrides.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")
_SPECIALS = re.compile(r'[,;:<>@"\\()\[\].]+')
# Parsing of header values (the From setting); every header we write is folded by this module.
BULK_POLICY = email_policy.default
LINE_LIMIT = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters, excluding the CRLF
CRLF = "\r\n"
_EW_MAX = 75  # RFC 2047 2: an encoded word is at most 75 characters
_EW_OVERHEAD = len("=?utf-8?b??=")

# A header line the registry would write unchanged: plain name, plain address, short enough.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'_-]+(?: [A-Za-z0-9'_-]+)*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PLAIN_LIMIT = LINE_LIMIT


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


def from_address(mail_from: str, name: str) -> Address:
    """The From of every email: the address of EVENTS_MAIL_FROM with `name` (the organisation's,
    mail/render.py `sender_name`) as its display name, reduced like any other."""
    return address(name, sender(mail_from).addr_spec)


def reply_to(value: str | None) -> Address | None:
    """The organisation's reply-to address as a header Address; None when there is none or it
    cannot be written into a header (the setting is checked when saved; this is the last guard)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return address(None, value)
    except BadAddress:
        return None


def _encoded_words(text: str, room: int) -> tuple[str, str]:
    """(the longest prefix of `text` as one B encoded word of at most `room` characters, the
    rest). Cut between characters, never inside one's UTF-8 bytes."""
    size = 0
    cut = 0
    limit = min(room, _EW_MAX) - _EW_OVERHEAD
    for i, ch in enumerate(text):
        n = size + len(ch.encode())
        if 4 * ((n + 2) // 3) > limit and cut:
            break
        size, cut = n, i + 1
    head = text[:cut]
    return "=?utf-8?b?" + base64.b64encode(head.encode()).decode("ascii") + "?=", text[cut:]


def _plain_words(text: str, *, phrase: bool) -> list[str] | None:
    """The words of `text` when it can be written as they are (printable ASCII, no word that
    could be read as an encoded word or is too long to fold), else None."""
    if not text.isascii():
        return None
    words = text.split(" ")
    for word in words:
        if not word or len(word) > LINE_LIMIT - 2 or "=?" in word or not word.isprintable():
            return None
        if phrase and _SPECIALS.search(word):
            return None
    return words


class _Lines:
    """A header being folded: whole tokens on lines of at most LINE_LIMIT characters."""

    def __init__(self, name: str) -> None:
        self.done: list[str] = []
        self.line = name + ":"

    def word(self, token: str) -> None:
        """An unbreakable token, after a space (on a new line of its own when it does not fit)."""
        if len(self.line) + 1 + len(token) > LINE_LIMIT:
            self.done.append(self.line)
            self.line = ""
        self.line += " " + token

    def encoded(self, text: str) -> None:
        """`text` as encoded words filling the lines (the spaces between them are not text)."""
        while text:
            room = LINE_LIMIT - len(self.line) - 1
            if room < _EW_OVERHEAD + 8:
                self.done.append(self.line)
                self.line, room = "", LINE_LIMIT - 1
            word, text = _encoded_words(text, room)
            self.line += " " + word

    def text(self) -> str:
        return CRLF.join(self.done + [self.line])


def fold_text(name: str, text: str) -> str:
    """`Name: text` for an unstructured header (Subject), folded, CRLF between lines and no final
    one. Readers get `text` back exactly, spaces included."""
    lines = _Lines(name)
    words = _plain_words(text, phrase=False)
    if words is None:
        lines.encoded(text)
    else:
        for word in words:
            lines.word(word)
    return lines.text()


def fold_address(name: str, *addresses: Address) -> str:
    """`Name: phrase <addr>, ...` (From, To, Reply-To), folded like `fold_text`. Display names
    must already be safe phrases (`address()` makes them so)."""
    lines = _Lines(name)
    for n, item in enumerate(addresses):
        last = n == len(addresses) - 1
        spec = item.addr_spec + ("" if last else ",")
        if item.display_name:
            words = _plain_words(item.display_name, phrase=True)
            if words is None:
                lines.encoded(item.display_name)
            else:
                for word in words:
                    lines.word(word)
            lines.word(f"<{item.addr_spec}>" + ("" if last else ","))
        else:
            lines.word(spec)
    return lines.text()


def fold_list_id(phrase: str, label: str) -> str:
    """`List-Id: phrase <label>` (RFC 2919), folded; a plain ASCII phrase is quoted."""
    lines = _Lines("List-Id")
    if phrase:
        words = _plain_words(phrase, phrase=True)
        if words is None:
            lines.encoded(phrase)
        else:
            words[0], words[-1] = '"' + words[0], words[-1] + '"'
            for word in words:
                lines.word(word)
    lines.word(f"<{label}>")
    return lines.text()


def fold_tokens(name: str, *tokens: str) -> str:
    """`Name: token token ...` folded between tokens, never inside one (List-Unsubscribe's
    `<URL>,` items: a URL split across lines is not read back the same by every receiver)."""
    lines = _Lines(name)
    for token in tokens:
        lines.word(token)
    return lines.text()


def fold(name: str, value) -> str:
    """One header, `Name: value`, folded (see the module doc), CRLF between lines and no final
    one. `value` is a string (unstructured) or an Address."""
    if isinstance(value, Address):
        return fold_address(name, value)
    return fold_text(name, value)


class _MailPolicy(EmailPolicy):
    """The SMTP policy (CRLF, 78 columns) with From, To, Cc, Reply-To and Subject folded by this
    module instead of the standard library's folder."""

    def fold_binary(self, name, value):
        key = name.lower()
        if key == "subject":
            return (fold_text(name, str(value)) + self.linesep).encode("ascii")
        if key in {"from", "to", "cc", "reply-to"} and getattr(value, "addresses", None):
            return (fold_address(name, *value.addresses) + self.linesep).encode("ascii")
        return super().fold_binary(name, value)


MAIL_POLICY = _MailPolicy(linesep=CRLF, max_line_length=LINE_LIMIT)


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
    return fold_address("To", recipient), recipient.addr_spec


def to_line_slow(name: str | None, addr: str) -> tuple[str, str]:
    """`to_line` always through the registry (the reference the fast path is tested against)."""
    recipient = address(name, addr)
    return fold_address("To", recipient), recipient.addr_spec
