"""Mail that comes back to us: `events-app inbound` (one message on standard input) and its LMTP
listener, an edge like the web and the mail worker. `parse` reads a message into what it asks for
(an unsubscribe, a delivery report, a complaint, a calendar reply, or nothing); `act` acts on it
through the domain's functions (it reads our VERP tags and Message-IDs, which mail/ makes, so it
lives here and not in the domain, which imports nothing from mail/); `lmtp` serves it.
"""
