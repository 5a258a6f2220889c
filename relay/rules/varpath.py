"""Where a relative path written in the rules lands: under the var directory.

Every command's ``--var DIR`` (default ``var``), like ``create_app(var_dir=DIR)``, names where
the relay keeps its state: the generated cookie secret, the SQLite spool, the ledger and the
files of ``file`` destinations. A path in the rules resolves like this::

    absolute                    /srv/relay/spool.db        -> /srv/relay/spool.db
    starting with var/          var/spool.db               -> DIR/spool.db
    any other relative path     spool.db, data/x.jsonl     -> DIR/spool.db, DIR/data/x.jsonl

The leading ``var/`` names the var directory itself. Rule files written when paths were
relative to the working directory (whose ``var/`` was the default var directory), like the
shipped ``sqlite:///var/spool.db`` and ``path: var/events.jsonl``, land where they always
did with the default ``--var var``, and in DIR with ``--var DIR``.

    >>> under_var("var/spool.db", "/srv/relay")
    '/srv/relay/spool.db'
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

VAR_COMPONENT = "var"


def under_var(path: str, var_dir: str | os.PathLike[str]) -> str:
    """``path`` from the rules, resolved against ``var_dir`` as the module docstring says."""
    if PurePosixPath(path).is_absolute():
        return path
    parts = PurePosixPath(path).parts
    if parts and parts[0] == VAR_COMPONENT:
        parts = parts[1:]
    return str(Path(var_dir, *parts))
