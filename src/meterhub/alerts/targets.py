"""Where webhooks may go: ``METERHUB_WEBHOOK_ALLOW``, host names and networks.

Unset, a webhook may name any http(s) URL, as a site whose receivers live on its own
network needs. Set (``hooks.example.com, *.corp.example, 10.20.0.0/16``), it closes the
server's outbound requests to those targets: a webhook URL must name one of the hosts
(``*.`` covers the subdomains of a name) or an IP address inside one of the networks. A
channel naming another target is refused (400 naming ``url``); a notification to one
created before the list changed fails at once, without a try. Names are matched as
written, never resolved: list a receiver by its name, not by the network it resolves into.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED = "not an allowed webhook target (METERHUB_WEBHOOK_ALLOW)"


@dataclass(frozen=True, slots=True)
class WebhookTargets:
    """Allowed hosts by name, name suffixes (``.corp.example``) and networks."""

    hosts: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str) -> WebhookTargets:
        """The comma-separated list of ``text``; ``ValueError`` naming a bad entry."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for entry in (part.strip().lower() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*.") and _is_name(entry[2:]):
                suffixes.append(entry[1:])
            elif _is_name(entry):
                hosts.add(entry)
            else:
                raise ValueError(f"{entry!r} is not a host name, *.name, IP address or network")
        if not (hosts or suffixes or networks):
            raise ValueError("names no host or network")
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows(self, url: str) -> bool:
        """Whether the host of ``url`` is one of the targets."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.hosts or host.endswith(self.suffixes)
        return any(address in network for network in self.networks)


def _is_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return all(label and label.replace("-", "").isalnum() for label in labels)
