"""Mail: what each message says (`messages`, `bulk` and `bulk_builder`, `render` on the `emails/`
templates), how it leaves (`transport`, `headers`, `verp`, `dkim`), and the worker that sends what
the domain queued: `worker` (the loop), `lanes` (a batch over the SMTP connections), `throttle`
(rate and batch size), `pause` (the automatic bulk pause), `delivery` (one row's bytes and outcome).

The outbox itself (enqueue, claim, mark, and staff's view of it) is the domain's
(events_app/domain/outbox.py, outbox_admin.py): the domain imports nothing from here, and mail uses
the domain's public functions only. Nothing is imported in this file.
"""
