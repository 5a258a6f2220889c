"""``FieldSet``: the fields an event can carry, as a tree of dotted paths.

The datamap (``relay.datamap``) computes with it: the envelope's fields, through each
pipeline step's ``paths`` function (``relay.pipeline.STEPS``), then through the vendor's
mapping. Every operation is pure and returns a new set.

    >>> fs = FieldSet.of(["user.email", "user.*", "context.ip"])
    >>> fs.drop("context.ip").hash("user.email").paths()
    [('user.*', False), ('user.email', True)]

A path names a field the event may hold and covers everything below it (``properties.items``
is the whole list). A ``*`` segment is any key not named beside it: ``user.email`` with
``user.*`` says "an email, and any other key"; dropping ``user.email`` leaves ``user.*``,
which does not bring the email back. A key known to be absent is kept as such (``None``), so
a later step cannot find it again under ``*``. ``match`` reads vendor patterns, in which
``[]`` marks a list (``properties.items[].price``), as ``relay.types.FieldMap`` writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

ANY = "*"
LIST = "[]"


@dataclass(frozen=True, slots=True)
class Leaf:
    """A field holding any value (an object or a list: all of it); SHA-256 hex if hashed."""

    hashed: bool = False


@dataclass(frozen=True, slots=True)
class Branch:
    """An object: its known keys (``None``: known to be absent) and, when ``other`` is set,
    any other key, each holding what ``other`` says."""

    keys: Mapping[str, Node | None] = field(default_factory=dict)
    other: Node | None = None


Node: TypeAlias = Leaf | Branch
LEAF = Leaf()
HASHED = Leaf(hashed=True)


def shape(value: Any) -> Node:
    """The node of a fixed value (a ``set`` step's): an object's keys, else a leaf."""
    if isinstance(value, dict):
        return Branch({str(k): shape(v) for k, v in value.items()})
    return LEAF


def split(pattern: str) -> tuple[str, ...]:
    """``properties.items[].price`` -> ``("properties", "items", "[]", "price")``."""
    out: list[str] = []
    for part in pattern.split("."):
        while part.endswith(LIST) and part != LIST:
            out.append(part[: -len(LIST)])
            part = LIST
        out.append(part)
    return tuple(out)


def _child(node: Node, key: str) -> Node | None:
    if isinstance(node, Leaf):
        return None if node.hashed else LEAF  # below a whole value: anything
    return node.keys.get(key, node.other)


def _as_branch(node: Node | None) -> Branch:
    """What a step writing below ``node`` finds there: an object (a value that is not one is
    replaced by one, as ``relay.paths.set_`` does)."""
    if isinstance(node, Branch):
        return node
    if node is None or node.hashed:
        return Branch()
    return Branch(other=LEAF)  # a whole value: an object with any keys, or not an object


def _replace(node: Node | None, keys: tuple[str, ...],
             change: Callable[[Node | None], Node | None], create: bool) -> Node | None:
    """``node`` with ``change`` applied at ``keys`` below it; parents are made only when
    ``create`` (a write), else an absent parent stays absent."""
    if not keys:
        return change(node)
    if node is None and not create:
        return None
    if isinstance(node, Leaf) and node.hashed and not create:
        return node
    branch = _as_branch(node)
    key, rest = keys[0], keys[1:]
    old = branch.keys.get(key, branch.other)
    new = _replace(old, rest, change, create)
    return Branch({**branch.keys, key: new}, branch.other)


def _merge(a: Node | None, b: Node | None) -> Node | None:
    """What either may hold (``a`` extended by ``b``'s keys)."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, Leaf) and isinstance(b, Leaf):
        return a if a == b else LEAF
    left, right = _as_branch(a), _as_branch(b)
    keys = {key: _merge(node, right.keys.get(key, right.other))
            for key, node in left.keys.items()}
    for key, node in right.keys.items():
        if key not in left.keys:
            keys[key] = _merge(left.other, node)
    return Branch(keys, _merge(left.other, right.other))


def _present(node: Node | None) -> bool:
    if node is None:
        return False
    if isinstance(node, Leaf):
        return True
    return node.other is not None or any(_present(n) for n in node.keys.values())


def _flat(node: Node, prefix: str) -> Iterator[tuple[str, bool]]:
    if isinstance(node, Leaf):
        yield prefix, node.hashed
        return
    for key, child in node.keys.items():
        if child is not None:
            yield from _flat(child, f"{prefix}.{key}" if prefix else key)
    if node.other is not None:
        yield from _flat(node.other, f"{prefix}.{ANY}" if prefix else ANY)


def _match(node: Node | None, keys: tuple[str, ...],
           bound: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], bool]]:
    if not _present(node):
        return
    assert node is not None
    if not keys:
        yield bound, isinstance(node, Leaf) and node.hashed
        return
    if isinstance(node, Leaf):
        if not node.hashed:  # a whole value: whatever the pattern names below it
            yield bound + (ANY,) * keys.count(ANY), False
        return
    key, rest = keys[0], keys[1:]
    if key == LIST:
        return  # an object is not a list
    if key == ANY:
        for name, child in node.keys.items():
            yield from _match(child, rest, (*bound, name))
        yield from _match(node.other, rest, (*bound, ANY))
        return
    yield from _match(_child(node, key), rest, bound)


@dataclass(frozen=True, slots=True)
class FieldSet:
    """The fields an event can carry (see the module's docstring)."""

    root: Branch = field(default_factory=Branch)

    @staticmethod
    def of(paths: Iterable[str]) -> FieldSet:
        """The set of ``paths`` (dotted; a last ``*`` segment is any other key)."""
        out = FieldSet()
        for path in paths:
            parent, _, last = path.rpartition(".")
            if last != ANY:
                out = out.put(path)
            elif parent:
                out = out.merge(parent, Branch(other=LEAF))
            else:
                out = FieldSet(Branch(out.root.keys, LEAF))
        return out

    def get(self, path: str) -> Node | None:
        """What ``path`` can hold, or None when it is never there."""
        node: Node | None = self.root
        for key in path.split("."):
            if node is None:
                return None
            node = _child(node, key)
        return node if _present(node) else None

    def has(self, path: str) -> bool:
        return self.get(path) is not None

    def _with(self, path: str, change: Callable[[Node | None], Node | None],
              create: bool) -> FieldSet:
        root = _replace(self.root, tuple(path.split(".")), change, create)
        return FieldSet(root if isinstance(root, Branch) else Branch())

    def drop(self, path: str) -> FieldSet:
        """Without ``path`` (known absent from now on)."""
        return self._with(path, lambda node: None, create=False)

    def put(self, path: str, node: Node = LEAF) -> FieldSet:
        """With ``path`` holding ``node`` (parents made as needed)."""
        return self._with(path, lambda old: node, create=True)

    def hash(self, path: str) -> FieldSet:
        """With ``path`` hashed, when it can be there (an object is removed: a hash step
        cannot hash it, so it is hashed or absent)."""
        return self._with(path, lambda old: HASHED if _present(old) else old, create=False)

    def merge(self, path: str, node: Node) -> FieldSet:
        """With ``path`` holding what it held or ``node``'s keys too."""
        return self._with(path, lambda old: _merge(old, node), create=True)

    def only(self, paths: Iterable[str], always: Iterable[str] = ()) -> FieldSet:
        """Only ``paths`` (what each can hold, all of it) and the top-level keys ``always``."""
        out = FieldSet(Branch({k: self.root.keys[k] for k in always if k in self.root.keys}))
        for path in paths:
            node = self.get(path)
            if node is not None:
                out = out.put(path, node)
        return out

    def paths(self) -> list[tuple[str, bool]]:
        """Every field, sorted: (dotted path, hashed)."""
        return sorted(_flat(self.root, ""))

    def match(self, pattern: str) -> list[tuple[tuple[str, ...], bool]]:
        """Where the vendor pattern ``pattern`` (``*`` any key, ``[]`` a list) finds a field:
        per find, the keys its ``*`` segments stand for (``*`` again where the set says
        "any other key") and whether the field is hashed.

            >>> FieldSet.of(["properties.value", "properties.*"]).match("properties.*")
            [(('value',), False), (('*',), False)]
        """
        return list(_match(self.root, split(pattern), ()))
