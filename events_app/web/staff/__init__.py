"""The staff workspace under /staff: server-rendered pages behind a session with CSRF checks.

`STAFF_HANDLERS` is what `app.py` registers. Each module owns one area: `session` (sign-in state,
CSRF, the page helper), `access` (sign-in, account, tokens, colleagues), `dashboard`,
`event_pages` with `event_form` (editor, registrants), `subscriber_pages`, `mail_pages` (outbox
and audit log), `bulletin_pages`, `announce_pages` (announcing an event, an announcement's delivery), and `chart` (the inline SVG charts).
"""

from .access import Account, SignIn
from .announce_pages import AnnouncePages, MailingPages
from .bulletin_pages import StaffBulletinPages
from .dashboard import Dashboard
from .event_pages import EventPages
from .mail_pages import AuditPage, MailPages
from .subscriber_pages import StaffSubscriberPages

STAFF_HANDLERS = [
    SignIn,
    Account,
    Dashboard,
    EventPages,
    StaffSubscriberPages,
    MailPages,
    AuditPage,
    StaffBulletinPages,
    AnnouncePages,
    MailingPages,
]
