"""Ingestion: the HTTP endpoints events arrive through.

``browser`` (``POST {p}/e``, the hot path, plain ASGI), ``webhook`` (``POST {p}/hook/{source}``,
authenticated backends) and ``segment`` (``POST {p}/v1/*``, Segment's API) read the request,
parse its body (``body``), hand the events to the engine and commit what it routed
(``commit``). Parsing is pure; the handlers only do I/O.
"""
