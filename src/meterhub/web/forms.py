"""What pages' forms and filters share: reading a posted field, offering and reading a
project choice limited to the projects the viewer sees."""

from __future__ import annotations

import re

from sqlalchemy import Connection
from starlette.datastructures import FormData

from meterhub.api.deps import visible_project
from meterhub.errors import InvalidInput
from meterhub.registry.projects import Project, list_projects
from meterhub.web.session import Viewer

PROJECT_CHOICES = 1000
"""The most projects a select lists."""
ROW_ID = re.compile(r"[0-9]{1,18}")


def form_text(form: FormData, name: str) -> str:
    """A posted text field as typed; an empty string when absent (or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def project_choices(conn: Connection, viewer: Viewer) -> list[Project]:
    """The projects a select offers: those the viewer sees, by id."""
    return list_projects(conn, viewer.user.visible_projects, offset=0, limit=PROJECT_CHOICES)[1]


def chosen_project(text: str, viewer: Viewer, conn: Connection) -> Project:
    """The project a form or filter names; 404 when the viewer may not see it."""
    if not ROW_ID.fullmatch(text.strip()):
        raise InvalidInput.field("project_id", "choose a project")
    return visible_project(int(text), viewer.user, conn)
