"""The error tree.

    RelayError
    ├── RulesError (relay.rules.diagnostics): a rules directory does not validate
    ├── SpoolUnavailable: the spool cannot commit; ingest answers 503 and accepts nothing
    │   └── SpoolFull: the spool holds relay.spool_max_bytes already
    ├── StateUnavailable: the state store failed after the spool committed; ingest answers
    │   503 so the client retries (at least once: a copy may be delivered twice)
    ├── Contended: another copy of an event is being committed and did not settle in time;
    │   ingest answers 503 (Retry-After) and accepts nothing (relay.engine.marks)
    └── DeliveryError: one delivery attempt failed
        ├── Retryable: network error, timeout, 408, 429, 5xx; retried with backoff
        └── Permanent: any other 4xx, an unmappable event; dead-lettered with the answer

Client mistakes at ingest are not exceptions: parse functions return error values that become
400/401/404/413/415 answers, never a 500.
"""

from __future__ import annotations


class RelayError(Exception):
    pass


class SpoolUnavailable(RelayError):
    """The spool could not commit: nothing in the request was accepted."""


class StateUnavailable(RelayError):
    """The state store failed after the spool committed the request's copies (their marks,
    or the consent state the request changed, may not be recorded): the client must retry;
    the retry's copies are duplicates, or delivered again if their marks were not recorded."""


class Contended(RelayError):
    """Another request's tentative dedup mark on a copy of this request did not settle
    within ``relay.engine.marks.WAIT_SECONDS``: nothing in the request was accepted."""


class SpoolFull(SpoolUnavailable):
    """The spool is at ``relay.spool_max_bytes``: new copies wait until delivery drains it."""


class DeliveryError(RelayError):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class Retryable(DeliveryError):
    def __init__(self, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(detail, status)
        self.retry_after = retry_after


class Permanent(DeliveryError):
    pass
