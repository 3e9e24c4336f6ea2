"""The alerts page of a project (open alerts first, history, rules and channels with their
forms), the overview's banner of open alerts, and a meter's page showing its open alerts."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from meterhub.alerts.evaluator import AlertEvaluator
from tests.alerts_support import MINUTE, base_time, make_site, read
from tests.web.conftest import Dashboard, shown_notice


def test_alerts_page_rules_channels_and_acknowledgement(
    dashboard: Dashboard, engine: Engine
) -> None:
    site = make_site(engine)
    page = f"/projects/{site.project_id}/alerts"
    rule = {"name": "Power silent", "kind": "offline", "device_type": "electricity"}
    bad = dashboard.form(f"{page}/rules", rule | {"minutes": "soon"})
    assert bad.status_code == 400
    assert "params.minutes" in bad.text
    added = dashboard.form(f"{page}/rules", rule | {"minutes": "5", "remind_after_minutes": "60"})
    assert shown_notice(dashboard, added) == "Rule “Power silent” added"
    bad_channel = dashboard.form(f"{page}/channels", {"kind": "webhook", "url": "nowhere"})
    assert bad_channel.status_code == 400
    assert "<code>url</code>" in bad_channel.text
    channel = {"kind": "email", "addresses": "ops@example.org; night@example.org"}
    assert shown_notice(dashboard, dashboard.form(f"{page}/channels", channel)) == "Channel added"

    now = base_time()
    evaluator = AlertEvaluator(engine)
    evaluator.tick(now)  # E1 and E2 never read
    read(engine, site, "E2", (now + MINUTE, 1.0))
    evaluator.tick(now + 2 * MINUTE)  # E2 back: resolved
    shown = dashboard.get(page).text
    assert 'id="open-count">1<' in shown
    open_at, history_at = shown.index("Open alerts"), shown.index('id="alert-history"')
    assert open_at < shown.index(">E1</a>") < history_at < shown.index(">E2</a>")
    assert "ops@example.org, night@example.org" in shown
    assert "every electricity meter" in shown

    listed = dashboard.get("/projects").text
    assert f'<a href="{page}"><span class="badge offline">1</span></a>' in listed
    overview = dashboard.get("/").text
    assert re.search(
        r"1 open alert</strong>:\s*<a href=\"" + page + r"\">Estate \(1\)</a>", overview
    )

    meter = dashboard.get("/meters/E1").text
    assert 'id="meter-alerts"' in meter
    assert "Power silent" in meter
    assert 'id="meter-alerts"' not in dashboard.get("/meters/E2").text
    alert_id = re.search(r'id="alert-(\d+)"', meter)
    assert alert_id is not None
    acked = dashboard.form(f"/alerts/{alert_id[1]}/ack", {"next": "/meters/E1"})
    assert acked.headers["location"] == "/meters/E1"
    assert shown_notice(dashboard, acked) == "Alert on meter E1 acknowledged"
    assert "operator" in dashboard.get(page).text

    rule_id = re.search(r"/alerts/rules/(\d+)/delete", dashboard.get(page).text)
    assert rule_id is not None
    off = dashboard.form(f"{page}/rules/{rule_id[1]}/disable")
    assert shown_notice(dashboard, off) == "Rule “Power silent” disabled"
    evaluator.tick(now + 3 * MINUTE)  # switched off: its open alert resolves
    assert 'id="open-count">0<' in dashboard.get(page).text
    gone = dashboard.form(f"{page}/rules/{rule_id[1]}/delete")
    assert shown_notice(dashboard, gone) == "Rule deleted"
    assert "No rules yet." in dashboard.get(page).text
    assert dashboard.get("/projects/999/alerts").status_code == 404
    assert dashboard.form("/alerts/999/ack").status_code == 404
