"""The operators' dashboard: server-rendered pages under ``/`` over the same services as the API."""
