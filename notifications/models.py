"""Reminder policies and the message outbox."""
