from __future__ import annotations

import pytest

from relay.rules.model import RelaySettings, SpoolWait
from relay.spool.factory import open_spool, place_url, spool_for
from relay.spool.redis import RedisSpool
from relay.spool.sqlite import SqliteSpool


def test_sqlite_urls() -> None:
    relative = open_spool("sqlite:///var/spool.db")
    absolute = open_spool("sqlite:////srv/relay/spool.db")
    assert isinstance(relative, SqliteSpool) and relative.path == "var/spool.db"
    assert isinstance(absolute, SqliteSpool) and absolute.path == "/srv/relay/spool.db"


async def test_redis_urls_and_the_rules_settings() -> None:
    plain = open_spool("redis://127.0.0.1:6379/0")
    assert isinstance(plain, RedisSpool) and plain.prefix == "relay:spool:"
    assert plain.claim_after == 30.0 and plain.wait is None
    settings = RelaySettings(spool="rediss://h:6380/2?prefix=shop:&ssl_cert_reqs=none",
                             spool_claim_after=5.0, spool_wait=SpoolWait(1, 0.25))
    tuned = spool_for(settings)
    assert isinstance(tuned, RedisSpool) and tuned.prefix == "shop:"
    assert tuned.claim_after == 5.0 and tuned.wait == SpoolWait(1, 0.25)
    assert isinstance(open_spool("unix:///run/redis.sock"), RedisSpool)
    for spool in (plain, tuned):
        await spool.r.aclose()


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://var/spool.db", "starts with sqlite:///"),
    ("sqlite:///", "names no file"),
    ("mysql://user:hunter2@db/x", "unknown spool URL scheme 'mysql'"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_spool(url)
    assert "hunter2" not in str(info.value)


def test_place_url_resolves_the_file_path_only() -> None:
    def resolve(path: str) -> str:
        return "/srv/relay/" + path.rsplit("/", 1)[-1] if not path.startswith("/") else path

    assert place_url("sqlite:///var/spool.db", resolve) == "sqlite:////srv/relay/spool.db"
    assert place_url("sqlite:////abs/spool.db", resolve) == "sqlite:////abs/spool.db"
    assert place_url("redis://localhost:6379/0", resolve) == "redis://localhost:6379/0"
    assert place_url("sqlite:///", resolve) == "sqlite:///"  # open_spool says what is wrong
