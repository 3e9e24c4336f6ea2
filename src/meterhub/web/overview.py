"""The overview: open alerts, meter health counts, meters needing attention, the collector,
its workers and billing."""

from __future__ import annotations

from fastapi import Request, Response

from meterhub.alerts.history import open_counts
from meterhub.api.deps import ConnDep, SettingsDep
from meterhub.billing.run_history import recent_runs
from meterhub.collector.fleet import failing_meters, last_cycle, status_counts
from meterhub.times import now_us
from meterhub.web.routing import page_router
from meterhub.web.session import ViewerDep
from meterhub.web.templating import render
from meterhub.workers import current_interval, list_workers

router = page_router()

LISTED = 10
"""Rows of each short list on the overview."""


@router.get("/")
def overview(request: Request, viewer: ViewerDep, conn: ConnDep, settings: SettingsDep) -> Response:
    """Open alerts and figures over the viewer's projects; for admins, the collector's cycle
    (fleet-wide) and, with a broker, the workers and the current interval's progress."""
    user = viewer.user
    scope = user.visible_projects
    since = now_us() - round(settings.poll_interval * 1_000_000)
    by_workers = user.is_admin and settings.broker_url is not None
    now, interval, beat = now_us(), settings.poll_interval, settings.worker_heartbeat
    context = {
        "counts": status_counts(conn, scope, since),
        "failing": failing_meters(conn, scope, limit=LISTED),
        "runs": recent_runs(conn, scope, limit=LISTED),
        "alerts": open_counts(conn, scope),
        "cycle": last_cycle(conn) if user.is_admin else None,
        "workers": list_workers(conn, now, interval, beat) if by_workers else None,
        "interval": current_interval(conn, now, interval) if by_workers else None,
    }
    return render(request, "overview.html", viewer, context)
