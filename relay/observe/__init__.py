"""Observability: JSON hop logs, Prometheus metrics, the live debug view."""
