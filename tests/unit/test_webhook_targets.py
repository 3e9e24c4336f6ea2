"""Where webhooks may go (``METERHUB_WEBHOOK_ALLOW``): names, subdomains and networks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from meterhub.alerts.targets import WebhookTargets
from meterhub.settings import Settings

TARGETS = WebhookTargets.parse("Hooks.Example.com, *.corp.example, 10.20.0.0/16, ::1, ")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/alerts", True),
        ("https://HOOKS.example.com./alerts", True),
        ("http://a.corp.example:8080/x", True),
        ("http://b.a.corp.example/x", True),
        ("http://corp.example/x", False),  # *. covers subdomains only
        ("http://evilcorp.example/x", False),
        ("http://hooks.example.com.evil.example/x", False),
        ("http://10.20.3.4/x", True),
        ("http://10.21.0.1/x", False),
        ("http://[::1]:9000/x", True),
        ("http://127.0.0.1/x", False),
        ("http://169.254.169.254/latest/meta-data", False),
    ],
)
def test_a_url_is_allowed_by_its_host(url: str, allowed: bool) -> None:
    assert TARGETS.allows(url) is allowed


@pytest.mark.parametrize("text", ["hooks.example.com, bad host", "*.", "10.0.0.0/33", " , "])
def test_a_bad_list_names_its_entry(text: str) -> None:
    with pytest.raises(ValueError, match=r"host name|names no"):
        WebhookTargets.parse(text)
    with pytest.raises(ValidationError, match="webhook_allow"):
        Settings(webhook_allow=text)


def test_unset_allows_any_target() -> None:
    assert Settings().webhook_targets is None
    assert Settings(webhook_allow="1password.example").webhook_targets == WebhookTargets(
        frozenset({"1password.example"}), (), ()
    )
