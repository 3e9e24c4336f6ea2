"""The meter models page (administrators): every model with its register map, adding one
from a model file (uploaded or pasted, read as ``meterhub models import`` and the API read
it), and deleting an added one no meter uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import File, Request, Response, UploadFile
from sqlalchemy import Connection

from meterhub.api.deps import ConnDep
from meterhub.errors import InvalidInput, TooLarge
from meterhub.registry.meter_models import (
    create_model,
    delete_model,
    list_models,
    meters_per_model,
    read_model_text,
)
from meterhub.web.forms import form_text
from meterhub.web.routing import notice_redirect, page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep, require_admin
from meterhub.web.templating import render

router = page_router()

MODEL_MAX_BYTES = 256 * 1024
"""The largest model file the page takes (413 beyond)."""
MODEL_ACCEPT = ".toml,.json,application/toml,application/json,text/plain"


@dataclass(frozen=True, slots=True)
class NewModel:
    """The add form's pasted text, and after a refused submission where the model came from
    (a file's name or the pasted text) and its errors by field."""

    text: str = ""
    source: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)


@router.get("/meter-models")
def models_page(request: Request, viewer: ViewerDep, conn: ConnDep) -> Response:
    require_admin(viewer)
    return _models_page(request, viewer, conn, NewModel())


@router.post("/meter-models")
def add_model(
    request: Request,
    viewer: ViewerDep,
    form: FormDep,
    conn: ConnDep,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Add the one model of an uploaded file or, without one, of the pasted ``text``; a
    refused model shows the page again with 400, naming each bad field."""
    require_admin(viewer)
    pasted = form_text(form, "text")
    filename = file.filename if file is not None and file.filename else ""
    try:
        docs = read_model_text(_model_text(file, pasted), filename)
        if len(docs) != 1:
            raise InvalidInput.field("file", f"{len(docs)} models: add one at a time")
        model = create_model(conn, docs[0])
    except TooLarge:
        raise
    except InvalidInput as exc:
        new = NewModel(pasted, filename or "the pasted text", exc.errors)
        return _models_page(request, viewer, conn, new, status=400)
    return notice_redirect("/meter-models", f"Meter model {model.name} added.")


@router.post("/meter-models/{name}/delete")
def remove_model(
    name: str, request: Request, viewer: ViewerDep, _form: FormDep, conn: ConnDep
) -> Response:
    """Delete an added model no meter uses (built-in and used ones: 400, saying why)."""
    require_admin(viewer)
    delete_model(conn, name)
    return notice_redirect("/meter-models", f"Meter model {name} deleted.")


def _model_text(upload: UploadFile | None, pasted: str) -> str:
    """The text of the uploaded file or, without one, the pasted text."""
    if upload is not None and upload.filename:
        data = upload.file.read(MODEL_MAX_BYTES + 1)
    elif pasted.strip():
        data = pasted.encode()
    else:
        raise InvalidInput.field("file", "choose a model file or paste one")
    if len(data) > MODEL_MAX_BYTES:
        raise TooLarge.field("file", f"over {MODEL_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput.field("file", "not UTF-8 text") from None


def _models_page(
    request: Request, viewer: Viewer, conn: Connection, new: NewModel, status: int = 200
) -> Response:
    context = {"models": list_models(conn), "used": meters_per_model(conn), "new": new}
    context["accept"] = MODEL_ACCEPT
    return render(request, "meter_models.html", viewer, context, status=status)
