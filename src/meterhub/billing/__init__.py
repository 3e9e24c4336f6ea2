"""Billing: tariffs and the consumption of a device over a period."""
