"""Protocols and care plans (see issue: care plans from protocols)."""
