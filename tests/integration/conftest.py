"""Fixtures of the integration tests beyond the shared ones."""

from tests.mqtt_support import broker

__all__ = ["broker"]
