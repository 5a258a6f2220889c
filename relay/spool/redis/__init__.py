"""The Redis spool (``relay.spool: redis://...``): Redis Streams, one outbox per
destination, shared by every replica; ``keys`` has the layout, ``spool`` the operations.

What it keeps depends on Redis's persistence: with AOF and ``appendfsync everysec`` a Redis
crash or power cut may lose up to about a second of accepted copies, with ``always`` none;
without persistence a Redis restart loses everything waiting."""

from relay.spool.redis.spool import RedisSpool

__all__ = ["RedisSpool"]
