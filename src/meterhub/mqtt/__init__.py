"""MQTT ingest: data sources that subscribe to a broker and store what gateways publish.

``config`` (a source's ``mqtt`` settings) and ``payload`` (a message's reading) are pure;
``ingest`` stores a batch of messages in one transaction, ``status`` keeps each source's
connection state and counters, ``client`` and ``subscriber`` talk to the broker, and
``supervisor`` runs one subscriber per active MQTT source on the leading server.
"""
