"""How a destination's copy differs from the event as it arrived, field by field: the debug
view's diff. Compared on the real values, so a change is named by what happened to the
field; shown masked (``relay.observe.mask``), so the diff holds nothing the rest of the view
may not show.

    >>> masker = Masker(b"doctest-masking-key-0123")
    >>> before = {"event": "page_view", "user": {"email": "ann@example.com"},
    ...           "context": {"ip": "203.0.113.77", "user_agent": "Mozilla/5.0 (X11; Linux)",
    ...                       "page": {"url": "https://shop.example/p?utm_source=news&n=2"}}}
    >>> after = {"event": "page_view", "user": {"email": 64 * "a"},
    ...          "context": {"ip": "203.0.113.0", "device": {"type": "desktop"},
    ...                      "page": {"url": "https://shop.example/p?n=2"}}}
    >>> for c in changes(before, after, masker):  # doctest: +ELLIPSIS
    ...     print(c["change"], c["path"], c["before" if c["change"] == "dropped" else "after"])
    hashed user.email aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    truncated context.ip 203.0.113.0 #...
    dropped context.user_agent [user agent #...]
    changed context.page.url https://shop.example/p?n=2
    added context.device.type desktop
    >>> [c.get("note") for c in changes(before, after, masker)][:4]
    ['SHA-256', None, None, 'removed ?utm_source']

Each change is ``{"path", "change", "before", "after", "note"}`` with ``change`` one of
``added``, ``dropped``, ``hashed``, ``truncated``, ``redacted``, ``changed``; ``before`` is
absent for an added field, ``after`` for a dropped one, ``note`` when there is more to say.
Lists are compared whole.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from relay.observe.mask import Masker
from relay.personal import CARD_MASK, EMAIL_MASK, HEX64, PHONE_MASK, truncate

Change = Literal["added", "dropped", "hashed", "truncated", "redacted", "changed"]
MOST = 200  # changes listed per copy; the rest are counted in one last line
_MASKS = (EMAIL_MASK, PHONE_MASK, CARD_MASK)
Path = tuple[str, ...]


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """The leaves of a tree by path, in document order (lists and empty objects are leaves).

    >>> leaves({"a": {"b": 1, "c": []}, "d": {}})
    {('a', 'b'): 1, ('a', 'c'): [], ('d',): {}}
    """
    if isinstance(value, dict) and value:
        out: dict[Path, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, (*prefix, str(key))))
        return out
    return {prefix: value} if prefix else {}


def kind(path: Path, before: Any, after: Any) -> tuple[Change, str]:
    """What happened to a field that is in both trees with different values, and a note.

    >>> kind(("context", "ip"), "203.0.113.77", "203.0.113.0")
    ('truncated', '')
    >>> kind(("properties", "note"), "mail ann@example.com", "mail [email]")
    ('redacted', '')
    """
    if isinstance(after, str) and HEX64.fullmatch(after) and not (
        isinstance(before, str) and HEX64.fullmatch(before)
    ):
        return "hashed", "SHA-256"
    if not (isinstance(before, str) and isinstance(after, str)):
        return "changed", ""
    if path[-1:] == ("ip",) and truncate(before.strip()) == after:
        return "truncated", ""
    if any(m in after and m not in before for m in _MASKS):
        return "redacted", ""
    removed = _removed_params(before, after)
    if removed:
        return "changed", "removed " + ", ".join("?" + p for p in removed)
    if after and before.startswith(after):
        return "truncated", f"{len(before)} -> {len(after)} characters"
    return "changed", ""


def changes(before: Any, after: Any, masker: Masker) -> list[dict[str, Any]]:
    """The changes from ``before`` (the event as it arrived) to ``after`` (a destination's
    copy), masked; see the module's docstring."""
    old, new = leaves(before), leaves(after)
    shown_old, shown_new = masker.event(before), masker.event(after)
    out: list[dict[str, Any]] = []
    for path in [*old, *(p for p in new if p not in old)]:
        if path in old and path in new and _same(old[path], new[path]):
            continue
        if path not in new:
            change: Change = "dropped"
            note = ""
        elif path not in old:
            change, note = "added", ""
        else:
            change, note = kind(path, old[path], new[path])
        shown = [masker.text(p) for p in path]
        item: dict[str, Any] = {"path": ".".join(shown), "change": change}
        if path in old:
            item["before"] = _at(shown_old, shown)
        if path in new:
            item["after"] = _at(shown_new, shown)
        if note:
            item["note"] = masker.text(note)
        out.append(item)
    if len(out) > MOST:
        rest = len(out) - MOST
        out = [*out[:MOST], {"path": "…", "change": "changed", "note": f"{rest} more"}]
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _at(tree: Any, path: list[str]) -> Any:
    """The masked value at the masked ``path`` (keys are masked as free text)."""
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return "[masked]"
        tree = tree[key]
    return tree


def _removed_params(before: str, after: str) -> list[str]:
    """The query parameters of URL ``before`` that URL ``after`` lost (both of one place)."""
    if "://" not in before or "?" not in before:
        return []
    try:
        a, b = urlsplit(before), urlsplit(after)
    except ValueError:
        return []
    if (a.scheme, a.netloc) != (b.scheme, b.netloc) or not a.scheme:
        return []
    kept = {name for name, _ in parse_qsl(b.query, keep_blank_values=True)}
    names = [name for name, _ in parse_qsl(a.query, keep_blank_values=True)]
    return [n for n in dict.fromkeys(names) if n not in kept]
