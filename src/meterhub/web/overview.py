"""The overview: meter health counts, meters needing attention, the collector and billing."""

from __future__ import annotations

from fastapi import Request, Response

from meterhub.api.deps import ConnDep, SettingsDep
from meterhub.billing.run_history import recent_runs
from meterhub.collector.fleet import failing_meters, last_cycle, status_counts
from meterhub.times import now_us
from meterhub.web.routing import page_router
from meterhub.web.session import ViewerDep
from meterhub.web.templating import render

router = page_router()

LISTED = 10
"""Rows of each short list on the overview."""


@router.get("/")
def overview(request: Request, viewer: ViewerDep, conn: ConnDep, settings: SettingsDep) -> Response:
    """Figures over the viewer's projects; the collector's cycle (fleet-wide) for admins."""
    user = viewer.user
    scope = user.visible_projects
    since = now_us() - round(settings.poll_interval * 1_000_000)
    context = {
        "counts": status_counts(conn, scope, since),
        "failing": failing_meters(conn, scope, limit=LISTED),
        "runs": recent_runs(conn, scope, limit=LISTED),
        "cycle": last_cycle(conn) if user.is_admin else None,
    }
    return render(request, "overview.html", viewer, context)
