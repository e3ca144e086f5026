"""Workload classes: chosen by annotation, labels, namespace or owner kind; expected duration."""

from __future__ import annotations

import json

import msgspec
import pytest

from carbon.testing import FixedView
from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.engine import Engine
from scheduler.extender.records import placement_record
from scheduler.extender.service import Extender
from scheduler.policy.classes import classify, owner_kinds
from scheduler.policy.validate import load_policy, policy_from_text
from tests.support.policy import POLICIES, fixture_json, recorded_pod

POLICY = policy_from_text(
    """\
apiVersion: lowcarb.dev/v2
kind: Policy
classes:
  gold:
    selector:
      matchLabels: {tier: gold}
      matchExpressions: [{key: team, operator: NotIn, values: [ops]}]
    expectedDuration: 30m
  research:
    selector: {namespaces: ["ml-*"], matchAnnotations: {owner: research}}
  training:
    selector: {ownerKinds: [PyTorchJob, JobSet]}
    expectedDuration: 8h
  batch:
    selector: {ownerKinds: [Job]}
    expectedDuration: 2h
  inference:
    selector: {ownerKinds: [Deployment]}
  default:
    expectedDuration: 1h
"""
)


def test_annotation_wins_over_selectors() -> None:
    pod = recorded_pod(annotations={"lowcarb.dev/class": "inference"}, owners=[("Job", "j")])
    choice = classify(POLICY, pod)
    assert (choice.name, choice.reason) == ("inference", "annotation lowcarb.dev/class")
    assert choice.notes == ()


def test_unknown_class_annotation_falls_back_to_selectors_with_a_note() -> None:
    pod = recorded_pod(annotations={"lowcarb.dev/class": "trainig"}, owners=[("Job", "j")])
    choice = classify(POLICY, pod)
    assert choice.name == "batch"
    assert len(choice.notes) == 1
    assert "lowcarb.dev/class='trainig' names no class" in choice.notes[0]


def test_labels_and_expressions() -> None:
    assert classify(POLICY, recorded_pod(labels={"tier": "gold"})).name == "gold"
    # NotIn excludes team=ops; the pod then falls through to the next class
    assert classify(POLICY, recorded_pod(labels={"tier": "gold", "team": "ops"})).name == "default"


def test_namespace_glob_and_annotation_must_both_match() -> None:
    both = recorded_pod(namespace="ml-vision", annotations={"owner": "research"})
    assert classify(POLICY, both).name == "research"
    wrong_ns = recorded_pod(namespace="web", annotations={"owner": "research"})
    assert classify(POLICY, wrong_ns).name == "default"


@pytest.mark.parametrize(
    ("owners", "labels", "kinds", "klass"),
    [
        ([("PyTorchJob", "bert")], {}, {"PyTorchJob"}, "training"),
        ([("Job", "eval")], {}, {"Job"}, "batch"),
        # a JobSet's pods are owned by a Job and carry the jobset label
        ([("Job", "js-0")], {"jobset.sigs.k8s.io/jobset-name": "js"}, {"Job", "JobSet"},
         "training"),
        # a Deployment's pods are owned by a ReplicaSet and carry pod-template-hash
        ([("ReplicaSet", "web-5d8")], {"pod-template-hash": "5d8"}, {"ReplicaSet", "Deployment"},
         "inference"),
        ([("ReplicaSet", "bare")], {}, {"ReplicaSet"}, "default"),
        ([], {}, set(), "default"),
    ],
)  # fmt: skip
def test_owner_kinds(
    owners: list[tuple[str, str]], labels: dict[str, str], kinds: set[str], klass: str
) -> None:
    pod = recorded_pod(owners=owners, labels=labels)
    assert owner_kinds(pod) == kinds
    assert classify(POLICY, pod).name == klass


def test_expected_duration_from_annotation_else_class_default() -> None:
    pod = recorded_pod(owners=[("Job", "j")], annotations={"lowcarb.dev/expected-duration": "90m"})
    assert classify(POLICY, pod).duration_s == 5400.0
    pod = recorded_pod(owners=[("Job", "j")], annotations={})
    assert classify(POLICY, pod).duration_s == 7200.0
    # the recorded pod says 6h
    assert classify(POLICY, recorded_pod()).duration_s == 6 * 3600.0


@pytest.mark.parametrize("bad", ["soon", "-3h", "0s", "400d", "1.5.2h"])
def test_unparsable_duration_falls_back_and_says_why(bad: str) -> None:
    pod = recorded_pod(owners=[("Job", "j")], annotations={"lowcarb.dev/expected-duration": bad})
    choice = classify(POLICY, pod)
    assert choice.duration_s == 7200.0
    (note,) = choice.notes
    assert f"lowcarb.dev/expected-duration={bad!r} is not usable" in note
    assert "class 'batch' default 2h" in note


def test_shipped_default_policy_classes() -> None:
    policy = load_policy(POLICIES / "default.yaml")
    cases = {
        "training": recorded_pod(owners=[("PyTorchJob", "p")], annotations={}),
        "batch": recorded_pod(owners=[("Job", "j")], annotations={}),
        "inference": recorded_pod(
            owners=[("ReplicaSet", "r")], labels={"pod-template-hash": "x"}, annotations={}
        ),
        "default": recorded_pod(owners=[], annotations={}),
    }
    for klass, pod in cases.items():
        choice = classify(policy, pod)
        assert choice.name == klass
        assert choice.duration_s == policy.classes[klass].duration_s


def test_bad_annotation_reaches_the_decision_through_the_extender() -> None:
    """A recorded kube-scheduler prioritize call: the ignored annotation is in the decision."""
    args = fixture_json("prioritize.args.nodeCacheCapable-false.json")
    args["Pod"]["metadata"]["annotations"] = {
        "lowcarb.dev/expected-duration": "a while",
        "lowcarb.dev/class": "gpu-heavy",
    }
    engine = Engine(POLICY)
    view = FixedView({"US-MIDA-PJM": 425.3, "US-NW-BPAT": 96.1, "DE": 481.5})
    zones = {"us-east": "US-MIDA-PJM", "us-west": "US-NW-BPAT", "eu-central": "DE"}
    state = ClusterState(zone_of=lambda labels: zones.get(labels.get(wire_region, "")))
    ext = Extender(state=state, engine=lambda: engine, carbon=lambda: view, clock=lambda: 0.0)
    out = json.loads(ext.prioritize(json.dumps(args).encode()))
    assert {h["Host"] for h in out} <= {n["metadata"]["name"] for n in args["Nodes"]["items"]}
    assert max(h["Score"] for h in out) == 10
    decision = ext._memo[args["Pod"]["metadata"]["uid"]]
    assert decision.klass == "default"
    notes = decision.evaluation.notes
    assert any("lowcarb.dev/class='gpu-heavy' names no class" in n for n in notes)
    assert any("lowcarb.dev/expected-duration='a while' is not usable" in n for n in notes)
    record = placement_record(decision, 0, 0.0)
    assert record.note == "; ".join(notes)
    assert record.expected_duration_s == 3600.0  # the default class's, the annotation was bad
    # a usable annotation is what the decision records
    args["Pod"]["metadata"]["annotations"] = {"lowcarb.dev/expected-duration": "5h"}
    ext.prioritize(json.dumps(args).encode())
    decision = ext._memo[args["Pod"]["metadata"]["uid"]]
    assert decision.duration_s == 5 * 3600.0
    assert decision.evaluation.notes == []


wire_region = "topology.kubernetes.io/region"


def test_recorded_pod_decodes() -> None:
    pod = msgspec.convert(fixture_json("pods-get.json"), wire.Pod)
    assert pod.metadata.annotations == {
        "lowcarb.dev/deadline": "24h",
        "lowcarb.dev/expected-duration": "6h",
    }
