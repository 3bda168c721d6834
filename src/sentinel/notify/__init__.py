"""Outgoing alerts: message building (pure), the durable outbox, and delivery channels (SMTP)."""
