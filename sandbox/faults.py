"""Fault rules: scripted misbehaviour for the next N matching requests.

A rule names an endpoint, lets ``skip`` matching requests pass, then applies its
actions to the next ``times`` matching requests (``null`` = forever).  Rules are
consulted in the order added and each keeps its own counters; a rule whose every
action is already decided by an earlier rule firing on the same request is not
consulted at all, so two status rules for one endpoint apply one after the other
("503, then 500") rather than the second being silently used up.  Counting per
rule keeps scenarios like "the third poll returns 503 twice" exact and inspectable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox.activities import FAULT_OUTCOME_ERRORS, ActivityState
from sandbox.wire import API_ENDPOINTS, Endpoint

ANY_ENDPOINT = "*"

ACTIONS = (
    "status",
    "delay_first_byte",
    "bytes_per_second",
    "drop_after_bytes",
    "activity_outcome",
)
RULE_KEYS = frozenset(
    {"endpoint", "skip", "times", "error_key", "error_message", "process", *ACTIONS}
)


class FaultRuleError(ValueError):
    """A rule that cannot be understood; reported as a 400 by the control API."""


@dataclass
class FaultRule:
    """A parsed rule plus its counters (``seen`` matching requests, ``fired`` applications)."""

    rule_id: int
    endpoint: str
    skip: int = 0
    times: int | None = 1
    status: int | None = None
    error_key: str | None = None
    error_message: str | None = None
    process: bool = False
    delay_first_byte: float = 0.0
    bytes_per_second: int | None = None
    drop_after_bytes: int | None = None
    activity_outcome: ActivityState | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, endpoint: Endpoint) -> bool:
        """An outcome-only rule matches nothing but create_export, even with ``*``."""
        if self.endpoint not in (ANY_ENDPOINT, endpoint.value):
            return False
        return endpoint is Endpoint.CREATE_EXPORT or any(v is not None for v in self.actions()[:-1])

    def actions(self) -> tuple[object, ...]:
        """Action values, None when unused; activity_outcome last."""
        return (
            self.status,
            self.delay_first_byte or None,
            self.bytes_per_second,
            self.drop_after_bytes,
            self.activity_outcome,
        )

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.rule_id,
            "endpoint": self.endpoint,
            "skip": self.skip,
            "times": self.times,
            "seen": self.seen,
            "fired": self.fired,
        }
        optional = {
            "status": self.status,
            "error_key": self.error_key,
            "error_message": self.error_message,
            "process": self.process or None,
            "delay_first_byte": self.delay_first_byte or None,
            "bytes_per_second": self.bytes_per_second,
            "drop_after_bytes": self.drop_after_bytes,
            "activity_outcome": self.activity_outcome.value if self.activity_outcome else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass
class FaultPlan:
    """The merged actions of every rule that fired for one request."""

    status: int | None = None
    error_key: str | None = None
    error_message: str | None = None
    process: bool = False
    delay_first_byte: float = 0.0
    bytes_per_second: int | None = None
    drop_after_bytes: int | None = None
    activity_outcome: ActivityState | None = None
    rule_ids: list[int] = field(default_factory=list)

    def supersedes(self, rule: FaultRule) -> bool:
        """True when every action of ``rule`` is already decided by an earlier rule."""
        decided = (
            self.status,
            self.delay_first_byte or None,
            self.bytes_per_second,
            self.drop_after_bytes,
            self.activity_outcome,
        )
        return all(
            mine is None or theirs is not None
            for mine, theirs in zip(rule.actions(), decided, strict=True)
        )

    def absorb(self, rule: FaultRule) -> None:
        self.rule_ids.append(rule.rule_id)
        if rule.status is not None and self.status is None:
            self.status = rule.status
            self.error_key = rule.error_key
            self.error_message = rule.error_message
            self.process = rule.process
        if rule.delay_first_byte and not self.delay_first_byte:
            self.delay_first_byte = rule.delay_first_byte
        if rule.bytes_per_second is not None and self.bytes_per_second is None:
            self.bytes_per_second = rule.bytes_per_second
        if rule.drop_after_bytes is not None and self.drop_after_bytes is None:
            self.drop_after_bytes = rule.drop_after_bytes
        if rule.activity_outcome is not None and self.activity_outcome is None:
            self.activity_outcome = rule.activity_outcome


def _int(raw: dict[str, Any], name: str, minimum: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultRuleError(f"{name} must be an integer >= {minimum}")
    return value


def _number(raw: dict[str, Any], name: str) -> float:
    value = raw.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultRuleError(f"{name} must be a number >= 0")
    return float(value)


def _endpoint(raw: dict[str, Any]) -> str:
    endpoint = raw.get("endpoint", ANY_ENDPOINT)
    allowed = {ANY_ENDPOINT} | {e.value for e in API_ENDPOINTS}
    if endpoint not in allowed:
        raise FaultRuleError(f"endpoint must be one of {sorted(allowed)}")
    return str(endpoint)


def _outcome(raw: dict[str, Any], endpoint: str) -> ActivityState | None:
    value = raw.get("activity_outcome")
    if value is None:
        return None
    if value not in {s.value for s in FAULT_OUTCOME_ERRORS}:
        raise FaultRuleError(f"activity_outcome must be one of {sorted(FAULT_OUTCOME_ERRORS)}")
    if endpoint not in (ANY_ENDPOINT, Endpoint.CREATE_EXPORT.value):
        raise FaultRuleError("activity_outcome only applies to create_export")
    return ActivityState(value)


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        raise FaultRuleError(f"{name} must be a string")
    return value


def parse_rule(raw: Any, rule_id: int) -> FaultRule:
    """Validate one rule object; raise :class:`FaultRuleError` explaining what is wrong."""
    if not isinstance(raw, dict):
        raise FaultRuleError("a rule must be a JSON object")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise FaultRuleError(f"unknown rule keys: {sorted(unknown)}")
    if not any(raw.get(action) is not None for action in ACTIONS):
        raise FaultRuleError(f"a rule needs at least one action of {list(ACTIONS)}")
    status = _int(raw, "status", 100)
    if status is not None and status > 599:
        raise FaultRuleError("status must be an HTTP status code")
    if not isinstance(raw.get("process", False), bool):
        raise FaultRuleError("process must be a boolean")
    endpoint = _endpoint(raw)
    bps = _int(raw, "bytes_per_second", 1)
    return FaultRule(
        rule_id=rule_id,
        endpoint=endpoint,
        skip=_int(raw, "skip", 0) or 0,
        times=_int(raw, "times", 1) if "times" in raw else 1,
        status=status,
        error_key=_text(raw, "error_key"),
        error_message=_text(raw, "error_message"),
        process=bool(raw.get("process", False)),
        delay_first_byte=_number(raw, "delay_first_byte"),
        bytes_per_second=bps,
        drop_after_bytes=_int(raw, "drop_after_bytes", 0),
        activity_outcome=_outcome(raw, endpoint),
    )


class FaultBook:
    """The active rules, shared by all request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, raw_rules: list[Any]) -> list[FaultRule]:
        """Add all rules or none: one invalid rule rejects the whole batch."""
        with self._lock:
            parsed = [parse_rule(raw, self._next_id + n) for n, raw in enumerate(raw_rules)]
            self._next_id += len(parsed)
            self._rules.extend(parsed)
            return parsed

    def clear(self) -> int:
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def plan_for(self, endpoint: Endpoint) -> FaultPlan:
        """Advance the counters of rules matching ``endpoint`` and merge those that fire."""
        plan = FaultPlan()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(endpoint) or rule.exhausted() or plan.supersedes(rule):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.fired += 1
                plan.absorb(rule)
        return plan
