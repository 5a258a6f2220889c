"""The admin listener: metrics, readiness, the active rules, dead letters, quarantine and
the live debug view, on a private port (never behind the CDN)."""
