"""Mail: what each message says (`messages`, `bulk`, `render` on the `emails/` templates), how it
leaves (`transport`, `headers`, `verp`, `dkim`) and the worker that sends what the domain queued.

The outbox itself (enqueue, claim, mark) is the domain's (events_app/domain/outbox.py): imports run
domain -> nothing here, and mail -> the domain's public functions. Nothing is imported in this file.
"""
