"""AdmissionReview ``admission.k8s.io/v1`` in and out: the contract of ``/mutate/carbon-window``.

The API server's request and lowcarb's answer as pydantic models for the OpenAPI document and the
response check. The body itself is decoded by :func:`scheduler.gates.webhook.review` (msgspec, the
same fields, with lowcarb's messages), so a body these models describe is one it accepts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class GroupVersionKind(BaseModel):
    group: str = ""
    version: str = ""
    kind: str = Field(default="", examples=["Pod"])


class AdmissionRequest(BaseModel):
    """What the API server asks (fields lowcarb does not read are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    uid: str = Field(description="Echoed in the response")
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    operation: str = Field(default="", examples=["CREATE"])
    namespace: str = ""
    object: dict[str, Any] | None = Field(
        default=None, description="The v1.Pod being created (only CREATE of Pods is changed)"
    )


class AdmissionReviewRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    apiVersion: str = Field(default="", examples=["admission.k8s.io/v1"])
    kind: str = Field(default="", examples=["AdmissionReview"])
    request: AdmissionRequest


class AdmissionResponse(BaseModel):
    """Always allowed; a JSON patch adds the carbon-window gate when the pod's class opts in."""

    model_config = ConfigDict(extra="forbid")

    uid: str
    allowed: Literal[True] = True
    patchType: Literal["JSONPatch"] | None = None
    patch: str | None = Field(default=None, description="Base64 of the JSON patch")
    warnings: list[str] | None = Field(default=None, description="Why a pod was left unchanged")


class AdmissionReviewResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["admission.k8s.io/v1"] = "admission.k8s.io/v1"
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse
