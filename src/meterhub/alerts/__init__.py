"""Alerts: rules per project, evaluated set-based by the leader, each firing kept as history
and notified through an outbox (webhook, e-mail) apart from evaluation."""
