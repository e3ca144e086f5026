"""``$ref``s to pydantic models from hand-written OpenAPI parts, and the components they need.

A route whose body FastAPI does not parse (it reads raw bytes: a size limit, msgspec decoding)
still documents it with a model: ``openapi_extra={"requestBody": ... ref(Model) ...}``.
:func:`ref` notes the model; :func:`components` gives the schemas of every model noted, for the
document builder (:mod:`scheduler.extender.http`) to add under ``components/schemas``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

TEMPLATE = "#/components/schemas/{model}"
_noted: dict[str, type[BaseModel]] = {}


def ref(model: type[BaseModel]) -> dict[str, str]:
    """``{"$ref": ...}`` to ``model``'s schema among the document's components."""
    seen = _noted.setdefault(model.__name__, model)
    if seen is not model:
        raise ValueError(f"two models named {model.__name__} in the OpenAPI document")
    return {"$ref": TEMPLATE.format(model=model.__name__)}


def components() -> dict[str, Any]:
    """The schemas of every model :func:`ref` noted, and of the models they contain."""
    if not _noted:
        return {}
    _, top = models_json_schema([(m, "validation") for m in _noted.values()], ref_template=TEMPLATE)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs
