"""Deleting a project, which billing refuses while the project has bills."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from meterhub.billing.tables import billing_runs, billing_tasks, bills, tariffs
from meterhub.errors import InvalidInput
from meterhub.registry import projects
from meterhub.registry.projects import get_project


def delete_project(conn: Connection, project_id: int) -> None:
    """Delete a project with its houses, tariffs and billing tasks (and their bill-less runs).

    Refused with ``InvalidInput`` (field ``project_id``) while the project has bills: they are
    its billing history, which deleting the project would orphan. Its devices stay, unassigned.
    """
    get_project(conn, project_id)
    billed = conn.execute(select(bills.c.id).where(bills.c.project_id == project_id).limit(1))
    if billed.first() is not None:
        raise InvalidInput.field(
            "project_id", f"project {project_id} has bills; its billing history is kept"
        )
    tasks = select(billing_tasks.c.natrual_key).where(billing_tasks.c.project_id == project_id)
    conn.execute(delete(billing_runs).where(billing_runs.c.task_key.in_(tasks)))
    conn.execute(delete(billing_tasks).where(billing_tasks.c.project_id == project_id))
    conn.execute(delete(tariffs).where(tariffs.c.project_id == project_id))
    projects.delete_project(conn, project_id)
