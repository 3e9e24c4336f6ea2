"""MQTT sources against a Mosquitto of the test's own that checks who connects: a
password file (no anonymous clients), and TLS listeners with a throwaway CA (made with the
``openssl`` command), one of them requiring a client certificate. The right settings
store what is published; wrong ones end disconnected with an error that says why, store
nothing, and leave the other sources of the supervisor running."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.api.app import create_app
from meterhub.settings import Settings
from tests.conftest import IN_CI
from tests.mqtt_support import (
    Broker,
    Ingest,
    mqtt_source,
    need_mosquitto,
    publish,
    settings_for,
    status,
    stored,
    wait_for_status,
)
from tests.support import admin_token, free_port, wait_until

MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
T_US = 1_772_366_400_000_000  # 2026-03-01T12:00:00Z


def _reading(value: float, offset_s: int = 0) -> tuple[str, str]:
    return "plant/boiler/temp", json.dumps({"ts": T_US + offset_s * 1_000_000, "value": value})


def _topics(source_id: str) -> list[dict[str, Any]]:
    return [{"pattern": "plant/{name}/temp", "tag": source_id + ".{name}"}]


def _values(engine: Engine, source_id: str) -> list[float]:
    return [value for _, value, _ in stored(engine, f"{source_id}.boiler")]


# --- credentials --------------------------------------------------------------------------


def _password_file(path: Path, users: dict[str, str]) -> None:
    """Mosquitto's password file: made by ``mosquitto_passwd`` when installed, else hashed
    here as it does (``$7$``: PBKDF2-SHA512, 101 rounds, 12 bytes of salt)."""
    if os.access(MOSQUITTO_PASSWD, os.X_OK):
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            command = [MOSQUITTO_PASSWD, "-b", *create, str(path), user, password]
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        return
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
        encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
        lines.append(f"{user}:$7$101${encoded[0]}${encoded[1]}\n")
    path.write_text("".join(lines))


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto refusing anonymous clients; users ``meterhub`` and ``gateway`` (the
    publisher)."""
    need_mosquitto()
    passwords = tmp_path / "passwords"
    _password_file(passwords, {"meterhub": "s3cret", "gateway": "gw-pass"})
    found = Broker(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n")
    found.publisher = {"username": "gateway", "password": "gw-pass"}
    found.start()
    yield found
    found.stop()


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    """The real app in-process, leading: its MQTT supervisor looks at the registry every
    0.1 s (no polling, billing or compaction)."""
    settings = Settings(
        database_url=database_url,
        collector_enabled=False,
        scheduler_enabled=False,
        compact_enabled=False,
        mqtt_check_interval=0.1,
    )
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    with TestClient(create_app(settings), headers=headers) as client:
        yield client


def _config(broker: Broker, source_id: str, **changes: Any) -> dict[str, Any]:
    return {"mqtt": {"url": broker.url, "topics": _topics(source_id), **changes}}


def _create(http: TestClient, broker: Broker, source_id: str, **changes: Any) -> None:
    body = {
        "id": source_id,
        "config": _config(broker, source_id, **changes),
        "tags": [{"id": f"{source_id}.boiler"}],
    }
    answer = http.post("/api/v1/data-sources/", json=body)
    assert answer.status_code == 201, answer.text


def _mqtt_status(http: TestClient, source_id: str) -> dict[str, Any]:
    answer = http.get(f"/api/v1/data-sources/{source_id}/")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["mqtt"]
    return found


def _wait(http: TestClient, source_id: str, **wanted: Any) -> dict[str, Any]:
    """The source's status on the API once it shows ``wanted``."""

    def shown() -> bool:
        found = _mqtt_status(http, source_id)
        return {key: found[key] for key in wanted} == wanted

    try:
        wait_until(shown, 10, 0.05)
    except AssertionError:
        raise AssertionError(f"wanted {wanted}, shown {_mqtt_status(http, source_id)}") from None
    return _mqtt_status(http, source_id)


def _refused(http: TestClient, source_id: str) -> str:
    """The error of a source the broker refuses: disconnected (retrying), not authorised."""
    found = _wait(http, source_id, state="disconnected", connected=False)
    error = str(found["last_error"])
    assert "not authori" in error.lower(), error
    assert found["last_error_at"] is not None
    return error


def test_credentials_checked_by_the_broker(
    http: TestClient, engine: Engine, private_broker: Broker
) -> None:
    broker = private_broker
    _create(http, broker, "good", username="meterhub", password="s3cret")
    _create(http, broker, "bad", username="meterhub", password="wrong-pass")
    _create(http, broker, "anon")  # no credentials at all
    _wait(http, "good", state="connected", connected=True)
    errors = [_refused(http, "bad"), _refused(http, "anon")]

    publish(broker, [_reading(1), _reading(2, 1)])
    _wait(http, "good", state="connected", messages_stored=2)
    assert _values(engine, "good") == [1, 2]
    for source_id in ("bad", "anon"):  # still refused, having stored nothing
        found = _wait(http, source_id, state="disconnected", messages_stored=0)
        assert found["last_stored_at"] is None
        assert _values(engine, source_id) == []
    listed = http.get("/api/v1/data-sources/")
    assert {s["id"]: s["mqtt"]["state"] for s in listed.json()["results"]} == {
        "anon": "disconnected",
        "bad": "disconnected",
        "good": "connected",
    }
    for text in (*errors, listed.text, http.get("/api/v1/data-sources/bad/").text):
        assert "wrong-pass" not in text
        assert "s3cret" not in text

    # the password fixed: the supervisor restarts that subscriber, which connects and stores
    fixed = _config(broker, "bad", username="meterhub", password="s3cret")
    answer = http.patch("/api/v1/data-sources/bad/", json={"config": fixed})
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["config"])["mqtt"]["password_set"] is True
    _wait(http, "bad", state="connected", connected=True)
    publish(broker, [_reading(3, 2)])
    _wait(http, "bad", messages_stored=1)
    _wait(http, "good", state="connected", messages_stored=3)  # never interrupted
    assert _values(engine, "bad") == [3]
    assert _values(engine, "good") == [1, 2, 3]
    assert _mqtt_status(http, "anon")["state"] == "disconnected"


# --- TLS ----------------------------------------------------------------------------------

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[elsewhere]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:broker.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Pki:
    """A throwaway CA, valid for a day, and certificates it signed, as PEM files."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.folder = folder
        self._config = folder / "openssl.cnf"
        self._config.write_text(_OPENSSL_CONFIG)
        self._serial = 1
        self.ca, self.ca_key = folder / "ca.pem", folder / "ca.key"
        self._openssl(
            "req", "-x509", *self._new_key(self.ca_key), "-extensions", "ca",
            "-subj", "/CN=meterhub test CA", "-days", "1", "-out", str(self.ca),
        )  # fmt: skip

    def issue(self, name: str, extensions: str) -> tuple[Path, Path]:
        """A certificate of section ``extensions`` of the configuration, and its key."""
        cert, key, request = (self.folder / f"{name}{end}" for end in (".pem", ".key", ".csr"))
        self._openssl("req", *self._new_key(key), "-subj", f"/CN={name}", "-out", str(request))
        self._serial += 1
        self._openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-set_serial", str(self._serial), "-days", "1", "-extfile", str(self._config),
            "-extensions", extensions, "-out", str(cert),
        )  # fmt: skip
        return cert, key

    def _new_key(self, key: Path) -> list[str]:
        return [
            "-new", "-config", str(self._config), "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
        ]  # fmt: skip

    def _openssl(self, *args: str) -> None:
        done = subprocess.run(
            [OPENSSL, *args], check=False, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _need_openssl() -> None:
    if not os.access(OPENSSL, os.X_OK):
        problem = "the openssl command is missing (apt-get install openssl)"
        if IN_CI:
            pytest.fail(f"{problem} (CI=true requires it)")
        pytest.skip(f"{problem}; set CI=true to make this an error")


class TlsBroker(Broker):
    """Mosquitto with three TLS listeners: ``port`` with a certificate for 127.0.0.1,
    ``client_port`` with it too but requiring a client certificate of the CA, and
    ``elsewhere_port`` with a certificate of the CA for another name."""

    def __init__(self, tmp: Path, pki: Pki) -> None:
        server = pki.issue("server", "server")
        elsewhere = pki.issue("elsewhere", "elsewhere")
        self.client_port, self.elsewhere_port = free_port(), free_port()

        def files(cert: tuple[Path, Path]) -> str:
            return f"cafile {pki.ca}\ncertfile {cert[0]}\nkeyfile {cert[1]}\n"

        super().__init__(
            tmp,
            f"{files(server)}"
            f"listener {self.client_port} 127.0.0.1\n{files(server)}require_certificate true\n"
            f"listener {self.elsewhere_port} 127.0.0.1\n{files(elsewhere)}"
            "allow_anonymous true\n",
            scheme="mqtts",
        )
        context = ssl.create_default_context(cafile=str(pki.ca))
        self.publisher = {"tls_context": context}

    def url_of(self, port: int) -> str:
        return f"mqtts://127.0.0.1:{port}"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    _need_openssl()
    return Pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    need_mosquitto()
    found = TlsBroker(tmp_path, pki)
    found.start()
    yield found
    found.stop()


def _failing(engine: Engine, source_id: str) -> str:
    wait_for_status(engine, source_id, state="disconnected")
    error = str(status(engine, source_id)["last_error"])
    assert error, status(engine, source_id)
    return error


def test_tls_checks_the_broker_and_presents_a_client_certificate(
    engine: Engine, database_url: str, pki: Pki, tls_broker: TlsBroker
) -> None:
    broker = tls_broker
    ca = {"ca_file": str(pki.ca)}
    client_cert, client_key = pki.issue("meterhub-client", "client")
    with_cert = {**ca, "cert_file": str(client_cert), "key_file": str(client_key)}
    client_url = broker.url_of(broker.client_port)
    sources: dict[str, dict[str, Any]] = {
        "trusted": {"tls": ca},
        "untrusted": {},  # the system's CAs: not ours
        "insecure": {"tls": {"insecure": True}},
        "elsewhere": {"url": broker.url_of(broker.elsewhere_port), "tls": ca},
        "certified": {"url": client_url, "tls": with_cert},
        "uncertified": {"url": client_url, "tls": ca},
    }
    for source_id, settings in sources.items():
        mqtt_source(engine, source_id, broker, _topics(source_id), **settings)

    with Ingest(engine, settings_for(database_url)):
        for source_id in ("trusted", "insecure", "certified"):
            wait_for_status(engine, source_id, state="connected")
        untrusted = _failing(engine, "untrusted")
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted, untrusted
        elsewhere = _failing(engine, "elsewhere")
        assert "CERTIFICATE_VERIFY_FAILED" in elsewhere, elsewhere
        assert "mismatch" in elsewhere, elsewhere
        uncertified = _failing(engine, "uncertified")
        assert "certificate required" in uncertified.lower(), uncertified

        publish(broker, [_reading(1), _reading(2, 1)])
        for source_id in ("trusted", "insecure", "certified"):
            wait_for_status(engine, source_id, state="connected", stored=2)
        for source_id in ("untrusted", "elsewhere", "uncertified"):
            wait_for_status(engine, source_id, state="disconnected", stored=0)
    assert {source_id: _values(engine, source_id) for source_id in sources} == {
        "trusted": [1, 2],
        "untrusted": [],
        "insecure": [1, 2],
        "elsewhere": [],
        "certified": [1, 2],
        "uncertified": [],
    }
