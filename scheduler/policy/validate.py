"""Policy loading and validation with every error at once, each with file, line, column and path.

The one policy loader (:func:`load_policy`, :func:`policy_from_text`): every command that reads a
policy file comes through here. YAML is composed into nodes first, so each value keeps its
position, and duplicate keys are caught there (:mod:`scheduler.policy.positions`). Then two passes
over the document, whose errors are reported together:

* field validation by the pydantic models of :mod:`scheduler.policy.model`, with their cross-field
  validators standing aside (:data:`carbon.checks.SEPARATE_CHECKS`), so one pass reports every
  wrong field;
* the cross-field checks of :mod:`scheduler.policy.checks` (fallback chain, zone-mapping loops,
  selector requirements, time-of-use schedules), over the validated policy when every field is
  valid, else over the raw data, so they run even when some field is wrong.

A ``lowcarb.dev/v1`` file (the class-weights model) gets one error at ``apiVersion`` naming the
lines to delete and ``lowcarb policy migrate``; a v2 file that keeps a class's ``weights`` gets one
error per key (:mod:`scheduler.policy.migrate`); pydantic's own errors for those keys are dropped.

Each problem is mapped back to the YAML node at its path and said in lowcarb's words with a hint
where one helps (``did you mean 'matchLabels'?``, ``quote it as "NO"``; see
:mod:`scheduler.policy.messages`). Warnings (valid, but probably not what was meant) come from
:mod:`scheduler.policy.lint` and :mod:`scheduler.policy.carbon_lint` once the policy is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from carbon.checks import SEPARATE_CHECKS
from scheduler.costs.energy import UNION_TAGS
from scheduler.policy.checks import policy_problems
from scheduler.policy.lint import policy_warnings
from scheduler.policy.messages import issue_for
from scheduler.policy.migrate import migration_issues, superseded
from scheduler.policy.model import DEFAULT_POLICY, Policy
from scheduler.policy.positions import Document, Issue, duplicates

__all__ = [
    "Checked",
    "Issue",
    "PolicyError",
    "check_document",
    "check_text",
    "lint_text",
    "load_policy",
    "policy_from_text",
    "validate_text",
]


class PolicyError(ValueError):
    """A policy that failed validation; ``issues`` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        count = f"{len(issues)} error{'s' if len(issues) != 1 else ''}"
        super().__init__(f"invalid policy ({count}):\n" + "\n".join(f"  {i}" for i in issues))


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check_document` found: the policy (None when invalid), errors, warnings."""

    policy: Policy | None
    errors: list[Issue]
    warnings: list[Issue] = field(default_factory=list)


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (the embedded default when ``path`` is None).

    Raises :class:`PolicyError` listing every problem with file:line:column.
    """
    return load_checked(Path(path) if path is not None else DEFAULT_POLICY)


def policy_from_text(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy from YAML text (errors as in :func:`load_policy`)."""
    return check_text(text, source)


def load_checked(path: Path) -> Policy:
    """Read and validate ``path``; raise :class:`PolicyError` with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Issue(str(path), 1, 1, "", f"cannot read the file: {exc}")]) from None
    return check_text(text, str(path))


def check_text(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; raise :class:`PolicyError` with every problem."""
    policy, issues = validate_text(text, source)
    if policy is None:
        raise PolicyError(issues)
    return policy


def validate_text(text: str, source: str = "<policy>") -> tuple[Policy | None, list[Issue]]:
    """The policy (None when invalid) and every error found in ``text``."""
    checked = check_document(text, source, warnings=False)
    return checked.policy, checked.errors


def lint_text(text: str, source: str = "<policy>") -> list[Issue]:
    """Warnings for a valid policy: owner kinds that look like typos, classes no selector can
    reach, residency zones no carbon source knows, and the carbon-coverage warnings of
    :mod:`scheduler.policy.carbon_lint`. Empty for an invalid policy."""
    return check_document(text, source).warnings


def check_document(text: str, source: str = "<policy>", *, warnings: bool = True) -> Checked:
    """Every error in ``text`` at once and, when it is valid, the warnings."""
    doc = Document.parse(text, source)
    if isinstance(doc, Issue):
        return Checked(None, [doc])
    errors = duplicates(doc.root, source)
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        errors.append(
            Issue(source, 1, 1, "", f"expected a mapping with apiVersion, kind, ... (got {kind})")
        )
        return Checked(None, errors)
    errors += migration_issues(doc)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(doc.data, context={SEPARATE_CHECKS: True})
    except ValidationError as exc:
        errors += [
            issue_for(err, doc)
            for err in exc.errors(include_url=False)
            if not superseded(_plain(err["loc"]), doc.data)
        ]
    # cross-field checks see the validated values when there are any, else the raw data
    checked = policy.model_dump(by_alias=True) if policy is not None else doc.data
    errors += [doc.issue(loc, message) for loc, message in policy_problems(checked)]
    if errors:
        return Checked(None, _ordered(errors))
    assert policy is not None
    if not warnings:
        return Checked(policy, [])
    from scheduler.policy.carbon_lint import carbon_warnings  # data tables: only when linting

    found = policy_warnings(policy) + carbon_warnings(policy)
    return Checked(policy, [], _ordered([doc.issue(loc, message) for loc, message in found]))


def _plain(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return tuple(s for s in loc if not (isinstance(s, str) and ("[" in s or s in UNION_TAGS)))


def _ordered(issues: list[Issue]) -> list[Issue]:
    unique = {(i.line, i.column, i.path, i.message): i for i in issues}
    return sorted(unique.values(), key=lambda i: (i.line, i.column))
