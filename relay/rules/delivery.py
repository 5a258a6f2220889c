"""The ``pipelines:`` and ``destinations:`` sections: how events are minimized and where
they go. Step kinds and destination types come from the catalog (``relay.rules.catalog``)."""

from __future__ import annotations

from typing import Any

from relay.rules.catalog import DestinationKind
from relay.rules.codes import (
    BATCH_TOO_LARGE,
    MIN_ABOVE_MAX,
    MISSING_PURPOSE,
    NO_DELETION,
    NOT_A_STEP,
    UNKNOWN_DESTINATION_TYPE,
    UNKNOWN_STEP,
)
from relay.rules.diagnostics import suggest
from relay.rules.fields import At
from relay.rules.model import Destination, Pipeline, Retry, Step
from relay.rules.reader import Reader

DESTINATION_KEYS = (
    "type", "purpose", "events", "when", "pipeline", "settings", "retry", "timeout",
    "concurrency", "batch_size", "circuit_breaker", "legal_basis", "retention", "deletion",
)
RETRY_KEYS = ("attempts", "max_backoff", "max_age", "base_backoff")
# GDPR Art. 6(1); the datamap prints it.
LEGAL_BASES = (
    "consent", "contract", "legal_obligation", "vital_interests", "public_task",
    "legitimate_interests",
)
UNGATED_TYPES = ("file", "log")  # the only destination types that may omit a purpose


def pipelines(r: Reader, section: At) -> dict[str, Pipeline]:
    out: dict[str, Pipeline] = {}
    registry = r.catalog.steps
    for name, at in r.entries(section):
        steps: list[Step] = []
        for item in at.items() if at.present else ():
            if not isinstance(item.value, dict) or len(item.value) != 1:
                item.error(NOT_A_STEP, "a step is a mapping with one key, the step kind",
                           "write it like '- ip: truncate'")
                continue
            kind, value = next(iter(item.value.items()))
            options = At(value, (*item.path, kind), r.rep)
            if kind not in registry:
                r.rep.error(options.path, UNKNOWN_STEP, f"unknown step '{kind}'",
                            suggest(kind, registry) or r.options(registry), key=True)
                continue
            steps.append(Step(kind, registry[kind].parse(options), item.path))
        out[name] = Pipeline(name, tuple(steps))
    return out


def destinations(r: Reader, section: At) -> dict[str, Destination]:
    out: dict[str, Destination] = {}
    registry = r.catalog.destinations
    for name, at in r.entries(section):
        if at.mapping(DESTINATION_KEYS, ("type",)) is None:
            continue
        get = at.get
        kind = get("type").string()
        ddef = registry.get(kind) if kind is not None else None
        if kind is not None and ddef is None:
            near = suggest(kind, registry)
            get("type").error(UNKNOWN_DESTINATION_TYPE, f"unknown destination type '{kind}'",
                              f"{near + ' ' if near else ''}known types: "
                              f"{', '.join(sorted(registry))}")
        purpose = r.ref("purpose", get("purpose")) if get("purpose").present else None
        if not get("purpose").present and ddef is not None and kind not in UNGATED_TYPES:
            at.error(MISSING_PURPOSE, "missing required key 'purpose'",
                     "every destination except file and log is gated by a purpose")
        events = _destination_events(r, get("events"))
        when = r.catalog.when(get("when")) if get("when").present else ()
        pipeline = r.ref("pipeline", get("pipeline")) if get("pipeline").present else None
        settings = ddef.parse_settings(get("settings")) if ddef is not None else None
        # Settings that name a purpose (a vendor's ad_consent) are checked like `purpose`.
        for key, named in getattr(settings, "purpose_settings", ()):
            r.refer("purpose", named, get("settings").get(key))
        batch = get("batch_size").integer(minimum=1)
        if ddef is not None and batch is not None and batch > ddef.max_batch:
            get("batch_size").error(BATCH_TOO_LARGE,
                                    f"{kind} takes at most {ddef.max_batch} events a batch",
                                    f"use {ddef.max_batch} or less")
            batch = None
        breaker = get("circuit_breaker")
        if breaker.present:
            breaker.mapping(("failures", "cooldown"))
        deletion = _deletion(get("deletion"), kind, ddef)
        d = Destination(name, kind or "", purpose)
        legal = get("legal_basis").choice(LEGAL_BASES)
        dest = Destination(
            name, kind or "", purpose, events, when, pipeline, settings,
            retry=_retry(r, get("retry")),
            timeout=r.positive(get("timeout"), d.timeout),
            concurrency=get("concurrency").integer(d.concurrency, minimum=1) or d.concurrency,
            batch_size=batch,
            breaker_failures=breaker.get("failures").integer(d.breaker_failures, minimum=1)
            or d.breaker_failures,
            breaker_cooldown=r.positive(breaker.get("cooldown"), d.breaker_cooldown),
            legal_basis=legal,
            retention=get("retention").string(),
            deletion=deletion,
        )
        if ddef is not None:
            out[name] = dest
    return out


def _deletion(at: At, kind: str | None, ddef: DestinationKind | None) -> Any:
    """``deletion:``: the settings ``relay forget`` uses at the vendor (typed by the type)."""
    if not at.present or ddef is None:
        return None
    if ddef.deletion is None:
        at.error(NO_DELETION, f"{kind} destinations have no deletion settings",
                 "relay forget has no vendor API to call for this type: remove 'deletion'")
        return None
    return ddef.deletion.parse(at)


def _destination_events(r: Reader, at: At) -> tuple[str, ...] | None:
    if not at.present or at.value == "*":
        return None
    if isinstance(at.value, str):
        at = At([at.value], at.path, r.rep)  # one event name, as a list of one
    names: list[str] = []
    for item in at.items():
        name = item.string()
        if name == "*":
            return None
        if name is not None:
            r.refer("event", name, item)
            names.append(name)
    return tuple(names)


def _retry(r: Reader, at: At) -> Retry:
    d = Retry()
    if not at.present or at.mapping(RETRY_KEYS) is None:
        return d
    base = r.positive(at.get("base_backoff"), d.base_backoff)
    cap = r.positive(at.get("max_backoff"), d.max_backoff)
    if base > cap:
        at.get("base_backoff").error(MIN_ABOVE_MAX,
                                     f"base_backoff {base:g}s is above max_backoff {cap:g}s",
                                     "lower base_backoff or raise max_backoff")
    return Retry(
        attempts=at.get("attempts").integer(d.attempts, minimum=1) or d.attempts,
        max_backoff=cap,
        max_age=r.positive(at.get("max_age"), d.max_age),
        base_backoff=base,
    )
