"""Mail that comes back to us: `events-app inbound` (one message on standard input) and its LMTP
listener. `parse` reads a message into what it asks for (an unsubscribe, a delivery report, a
complaint, a calendar reply, or nothing); `lmtp` serves it; the rules that act on it live in
events_app/domain/inbound.py.
"""
