"""End-to-end tests: the real ``relay serve`` (its default server; ``test_e2e_servers``
runs each of the three), stand-in vendors, Redis.

Helpers live next to the tests: ``relayproc`` (processes and the CLI), ``vendor`` (the
stand-in vendor server), ``rulesdir`` (rule directories for a test), ``wire`` (HTTP helpers).
"""
