"""The connection to a broker: aiomqtt's client, with messages acknowledged once stored."""

from __future__ import annotations

import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from meterhub.mqtt.config import MqttConfig, TlsOptions
from meterhub.times import now_us


class Delivery(aiomqtt.Message):
    """A message as received: with its DUP flag (set by the broker on a redelivery) and the
    time it arrived, in µs."""

    def __init__(self, message: paho.MQTTMessage, received_us: int) -> None:
        super().__init__(
            message.topic, bytes(message.payload), message.qos, message.retain, message.mid, None
        )
        self.dup = bool(message.dup)
        self.received_us = received_us


class AckingClient(aiomqtt.Client):
    """aiomqtt's client, with what its 2.5 release lacks (aiomqtt issue #345, through the
    paho client it wraps): the caller acknowledges each message (``ack``) once stored, not
    the library as it arrives; and messages are ``Delivery``s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)  # before connecting: a session's backlog comes first
        self._client.on_log = self._on_log
        self._last_error: str | None = None

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._queue.put_nowait(Delivery(message, now_us()))  # the queue is unbounded

    def _on_log(self, client: paho.Client, userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:  # "failed to receive on socket: [SSL: ...] ..."
            self._last_error = text

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        """A connection closed before the broker's CONNACK (a TLS client certificate
        refused, say) fails the connecting at once, saying why: aiomqtt would wait for its
        timeout and report that instead."""
        if self._lock.locked() and not self._connected.done():  # connecting (__aenter__)
            why = self._last_error or f"connection closed before the broker answered: {reason_code}"
            self._connected.set_exception(aiomqtt.MqttError(why))
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def ack(self, delivery: aiomqtt.Message) -> None:
        """Send the PUBACK of a stored message (nothing for QoS 0; a lost connection drops
        it, and the broker delivers the message again)."""
        self._client.ack(delivery.mid, delivery.qos)


def open_client(
    config: MqttConfig, source_id: str, password: str | None, tls: ssl.SSLContext | None
) -> AckingClient:
    """A client for ``config``'s broker (over ``tls`` for ``mqtts://``: ``tls_context``),
    on the persistent session of a stable client id (clean session off), not connected."""
    return AckingClient(
        config.host,
        config.port,
        username=config.username,
        password=password,
        identifier=config.session_id(source_id),
        clean_session=False,
        keepalive=config.keepalive,
        timeout=10,
        tls_context=tls,
        tls_insecure=config.tls.insecure if config.tls else None,
    )


def tls_context(options: TlsOptions | None) -> ssl.SSLContext:
    """Verify the broker against the CA file (or the system's CAs) unless ``insecure``;
    present the client certificate when one is given. Reads files: call it off the loop."""
    tls = options or TlsOptions()
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.sslsocket_class = _ClosedOnFailure
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _ClosedOnFailure(ssl.SSLSocket):
    """Closed when its handshake fails (a broker's certificate refused): paho drops it
    open, for the garbage collector to close."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise
