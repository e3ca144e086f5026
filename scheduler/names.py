"""Every ``lowcarb.dev/`` name lowcarb reads from or writes onto Kubernetes objects, defined once.

Annotations a pod may carry (read at scheduling), the ones lowcarb writes at bind, the scheduling
gate of temporal shifting (also the namespace/pod label key the admission webhook's selector
uses, see ``deploy/kustomize/components/webhook``) and the controller names its Events report.
The decision annotation is defined in ``carbon`` (the ledger decodes it and ``carbon`` never
imports ``scheduler``) and re-exported here. A leaf module: it imports nothing from ``scheduler``.
"""

from __future__ import annotations

from typing import Final

from carbon.accounting.ledger import DECISION_ANNOTATION as ANN_DECISION

PREFIX: Final = "lowcarb.dev/"

# --- annotations a pod sets (read by demand parsing, classes and the gate controller) ----------
#: Thousandths of one GPU a sharing pod uses (1..1000, 1-GPU pods only).
ANN_GPU_MILLI: Final = "lowcarb.dev/gpu-milli"
#: Comma-separated GPU models the pod accepts.
ANN_GPU_MODELS: Final = "lowcarb.dev/gpu-models"
#: Minimum GPU memory per GPU (a quantity).
ANN_GPU_MEMORY: Final = "lowcarb.dev/gpu-memory"
#: The policy class to use (overrides the class selectors).
ANN_CLASS: Final = "lowcarb.dev/class"
#: Expected run time (a duration such as ``6h``).
ANN_DURATION: Final = "lowcarb.dev/expected-duration"
#: Latest finish for temporal shifting (RFC 3339, or a duration after creation).
ANN_DEADLINE: Final = "lowcarb.dev/deadline"

# --- annotations lowcarb writes at bind (carried by the Binding) --------------------------------
# ANN_DECISION (imported above): the placement decision as compact JSON
# (``PlacementRecord.to_annotation``), carried to the pod by the Binding.
#: The GPU indices lowcarb assigned on the node (``"3"`` or ``"0,1"``); read back on resync.
ANN_GPU_INDEX: Final = "lowcarb.dev/gpu-index"

# --- scheduling gate ------------------------------------------------------------------------------
#: The scheduling gate that holds a pod for a cleaner hour; the same key as a namespace/pod label
#: (``enabled``/``disabled``) selects pods for the admission webhook.
GATE: Final = "lowcarb.dev/carbon-window"

# --- Events ---------------------------------------------------------------------------------------
#: ``reportingController`` of the Events lowcarb's scheduler writes.
EVENT_CONTROLLER: Final = "lowcarb.dev/scheduler"
#: ``reportingController`` of the gate controller's Events.
GATE_CONTROLLER: Final = "lowcarb.dev/gate-controller"

#: Every annotation key lowcarb reads or writes.
ANNOTATIONS: Final = (
    ANN_GPU_MILLI,
    ANN_GPU_MODELS,
    ANN_GPU_MEMORY,
    ANN_CLASS,
    ANN_DURATION,
    ANN_DEADLINE,
    ANN_DECISION,
    ANN_GPU_INDEX,
)
