"""What the rules can name that lives outside them: pipeline step kinds, destination types
and the ``when`` matchers; and the policy checks that need those components.

The rules are read below the components they configure (a step's module uses
``relay.rules.fields.At`` to type its options), so the loader cannot import them: the
caller hands it a ``Catalog`` instead, as a collector is handed its component factories.
``relay.registry.CATALOG`` is the relay's own; tests may pass a smaller or a fake one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.rules.model import Matcher, Rules


class StepKind(Protocol):
    """A pipeline step kind, as the loader sees it: how to type its options."""

    @property
    def parse(self) -> Callable[[At], Any]: ...


class DeletionKind(Protocol):
    """How a destination type deletes a person, as the loader sees it: how to type its
    ``deletion:`` settings."""

    @property
    def parse(self) -> Callable[[At], Any]: ...


class DestinationKind(Protocol):
    """A destination type, as the loader sees it: how to type its settings and its deletion
    settings (None: the type deletes nothing), and the most events one request may carry."""

    @property
    def parse_settings(self) -> Callable[[At], Any]: ...

    @property
    def max_batch(self) -> int: ...

    @property
    def deletion(self) -> DeletionKind | None: ...


@dataclass(frozen=True, slots=True)
class Catalog:
    """``policy`` runs on rules without errors and reports warnings about them (the privacy
    lint, ``relay.datamap.policy``, reads the pipelines and vendor mappings through them)."""

    steps: Mapping[str, StepKind]
    destinations: Mapping[str, DestinationKind]
    when: Callable[[At], tuple[Matcher, ...]]
    policy: Callable[[Rules, Reporter], None] | None = None
