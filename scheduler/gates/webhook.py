"""Mutating admission webhook: opt a whole workload class into temporal shifting.

Scheduling gates can only be set when a pod is created (adding one later is 422 Forbidden), so a
class whose policy says ``temporalShift: {enabled: true, ...}`` gets the gate
``lowcarb.dev/carbon-window`` from this webhook at CREATE time; the gate controller
(:mod:`scheduler.gates.controller`) then holds and releases those pods. Pods that already carry the
gate,
pods bound at creation (``spec.nodeName``) and other classes pass unchanged. The webhook never
rejects a pod: anything it cannot read is allowed as is (with a warning), and the
``MutatingWebhookConfiguration`` should use ``failurePolicy: Ignore``.

Served as ``POST /mutate/carbon-window`` (AdmissionReview ``admission.k8s.io/v1``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from fastapi import APIRouter
from starlette.requests import Request

from scheduler import wire
from scheduler.api.admission import AdmissionReviewRequest, AdmissionReviewResponse
from scheduler.api.errors import ApiError, error_responses
from scheduler.api.schema import ref
from scheduler.decode_errors import describe
from scheduler.gates.request import GATE

log = structlog.get_logger("lowcarb.admission")

PATH = "/mutate/carbon-window"
MAX_BODY = 4 * 2**20  # the API server caps objects at ~1.5 MiB; AdmissionReview adds oldObject


class GroupVersionKind(msgspec.Struct):
    group: str = ""
    version: str = ""
    kind: str = ""


class AdmissionRequest(msgspec.Struct):
    uid: str
    kind: GroupVersionKind = msgspec.field(default_factory=GroupVersionKind)
    operation: str = ""
    namespace: str = ""
    object: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class AdmissionReview(msgspec.Struct):
    apiVersion: str = ""
    kind: str = ""
    request: AdmissionRequest | None = None


class _GatesSpec(msgspec.Struct):
    schedulingGates: list[dict[str, Any]] | None = None
    nodeName: str = ""


class _GatesOnly(msgspec.Struct):
    """The raw shape of ``spec.schedulingGates`` (absent vs empty matters for the patch)."""

    spec: _GatesSpec = msgspec.field(default_factory=_GatesSpec)


_review = msgspec.json.Decoder(AdmissionReview)
_gates_only = msgspec.json.Decoder(_GatesOnly)


class AdmissionError(ValueError):
    """The body is not an AdmissionReview (HTTP 400)."""


def review(body: bytes, policy: Any) -> dict[str, Any]:
    """Answer one AdmissionReview: allowed, plus a JSON patch adding our gate when the class
    opts in. Raises :class:`AdmissionError` when the body is not an AdmissionReview."""
    try:
        ar = _review.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        kind = "an admission.k8s.io/v1 AdmissionReview"
        raise AdmissionError(describe("body", kind, AdmissionReview, body, exc)) from exc
    if ar.request is None:
        raise AdmissionError("AdmissionReview has no 'request' (field request.uid is required)")
    req = ar.request
    response: dict[str, Any] = {"uid": req.uid, "allowed": True}
    out: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }
    if req.kind.kind != "Pod" or req.operation != "CREATE" or bytes(req.object) in (b"", b"null"):
        return out
    try:
        raw = _gates_only.decode(req.object)
        pod = wire.decode_pod(req.object)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        why = describe("the pod", "a v1.Pod", wire.Pod, bytes(req.object), exc)
        response["warnings"] = [f"lowcarb: pod not read, left unchanged: {why}"[:500]]
        return out
    if raw.spec.nodeName or any(g.get("name") == GATE for g in raw.spec.schedulingGates or ()):
        return out
    if not pod.metadata.namespace:
        pod.metadata.namespace = req.namespace  # CREATE objects may carry it only on the request
    from scheduler.policy.classes import classify

    choice = classify(policy, pod)
    shift = choice.workload_class.temporalShift
    if shift is None or not shift.enabled:
        return out
    patch: list[dict[str, Any]]
    if raw.spec.schedulingGates is None:
        patch = [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}]
    else:
        patch = [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GATE}}]
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(msgspec.json.encode(patch)).decode()
    log.info("gate_added", pod=f"{pod.metadata.namespace}/{pod.metadata.name}", klass=choice.name)
    return out


def router(policy: Callable[[], Any]) -> APIRouter:
    """``POST /mutate/carbon-window`` for the service's app: the raw body (at most
    :data:`MAX_BODY`) goes to :func:`review`; the answer is checked against the
    AdmissionReview response model, errors go through :class:`scheduler.api.errors.ApiError`."""
    routes = APIRouter(tags=["admission"])

    @routes.post(
        PATH,
        name="mutate_carbon_window",
        summary="Mutating admission webhook: gate pods of classes that opt into temporal shifting",
        response_model=AdmissionReviewResponse,
        response_model_exclude_none=True,
        responses=error_responses(400, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(AdmissionReviewRequest)}},
            }
        },
    )
    async def mutate(request: Request) -> dict[str, Any]:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise ApiError(413, f"body above {MAX_BODY} bytes", field="body")
        try:
            return review(bytes(body), policy())
        except AdmissionError as exc:
            raise ApiError(400, str(exc), field="body") from None

    return routes
