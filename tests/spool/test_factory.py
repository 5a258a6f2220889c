from __future__ import annotations

import pytest

from relay.spool.factory import open_spool, place_url
from relay.spool.sqlite import SqliteSpool


def test_sqlite_urls() -> None:
    relative = open_spool("sqlite:///var/spool.db")
    absolute = open_spool("sqlite:////srv/relay/spool.db")
    assert isinstance(relative, SqliteSpool) and relative.path == "var/spool.db"
    assert isinstance(absolute, SqliteSpool) and absolute.path == "/srv/relay/spool.db"


@pytest.mark.parametrize(("url", "message"), [
    ("redis://localhost:6379/0", "redis spool not available yet"),
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
