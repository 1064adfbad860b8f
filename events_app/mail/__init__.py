"""Mail: the durable outbox (`outbox`), what each message says (`messages`, `render` on the
`emails/` templates), how it leaves (`transport`) and the loop that sends (`worker`).

Nothing is imported here: the domain imports `outbox` alone and must not pull in SMTP or Jinja.
"""
