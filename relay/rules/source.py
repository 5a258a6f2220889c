"""Read a rules directory into one raw tree, remembering where every key and value stands.

``read_rules_dir(path)`` composes each ``*.yaml``/``*.yml`` file (sorted) with PyYAML, turns
the node tree into plain Python values, records the ``Mark`` of every key path, expands
``${VAR}`` / ``${VAR:-default}`` from the environment, and merges the files' top-level
sections. A key defined in two files is reported (R002) with both places.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from relay.rules.diagnostics import Diagnostic, Mark, Path, Reporter

YAML_SYNTAX = "R001"
DUPLICATE_KEY = "R002"
UNSET_VARIABLE = "R003"
NOT_A_MAPPING = "R004"
NO_RULE_FILES = "R005"

_VAR = re.compile(r"\$[{\ue000]([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\ue001]*))?[}\ue001]")
# `{secret: ${X}}` is not valid YAML: braces are flow indicators. Before composing, each
# ${...} gets stand-in braces from the private use area (same length, so marks stay true).
_SHIELD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}\n]*)?)\}")


def _shield(text: str) -> str:
    return _SHIELD.sub(lambda m: "$\ue000" + m.group(1) + "\ue001", text)


_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
try:  # the C loader is several times faster; fall back to pure Python where absent
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


@dataclass
class RawRules:
    """The merged raw tree, its marks, and which values came from the environment.

    ``variables`` names the ``${VAR}`` references of each substituted value, in order;
    ``defaulted`` holds the paths where at least one of them was unset and its
    ``:-default`` written in the file was used.
    """

    tree: dict[str, Any] = field(default_factory=dict)
    reporter: Reporter = field(default_factory=Reporter)
    secret_paths: set[Path] = field(default_factory=set)
    variables: dict[Path, tuple[str, ...]] = field(default_factory=dict)
    defaulted: set[Path] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    digest: str = ""


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    def __init__(self, file: str, raw: RawRules, env: Mapping[str, str]) -> None:
        self.file = file
        self.raw = raw
        self.env = env
        self.rep = raw.reporter
        self.loader = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.rep.marks.setdefault(path, _mark(self.file, node))
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                key_s = str(key)
                child = (*path, key_s)
                if key_s in out:
                    self.rep.diagnostics.append(
                        Diagnostic(
                            _mark(self.file, key_node),
                            DUPLICATE_KEY,
                            child,
                            f"key '{key_s}' is defined twice in this file",
                            f"first at line {self.rep.key_marks[child].line}",
                        )
                    )
                    continue
                self.rep.key_marks[child] = _mark(self.file, key_node)
                out[key_s] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, str) and _VAR.search(value):
            return self.expand(value, path)
        return value

    def scalar(self, node: yaml.Node) -> Any:
        """The scalar's value with YAML's own typing, except timestamps, which stay text."""
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":timestamp"):
            return node.value if isinstance(node, yaml.ScalarNode) else str(node.value)
        if node.tag.endswith(":str"):
            return node.value
        return self.loader.construct_object(node, deep=True)

    def expand(self, text: str, path: Path) -> str:
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env and self.env[name] != "":
                return self.env[name]
            if default is not None:
                self.raw.defaulted.add(path)
                return default
            self.rep.error(
                path,
                UNSET_VARIABLE,
                f"environment variable {name} is not set",
                f"export {name}=... or write ${{{name}:-default}}",
            )
            return ""

        self.raw.secret_paths.add(path)
        self.raw.variables[path] = tuple(m.group(1) for m in _VAR.finditer(text))
        return _VAR.sub(repl, text)


def read_rules_dir(
    directory: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> RawRules:
    env = os.environ if env is None else env
    raw = RawRules()
    base = FsPath(directory)
    files = (
        sorted(p for p in base.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
        if base.is_dir()
        else []
    )
    digest = hashlib.sha256()
    if not files:
        raw.reporter.marks[()] = Mark(str(base), 0, 0)
        raw.reporter.error((), NO_RULE_FILES, f"no *.yaml or *.yml files in {base}")
    for path in files:
        name = str(path)
        raw.files.append(name)
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw.reporter.diagnostics.append(_syntax(
                _position(name, data[: exc.start].decode("utf-8")),
                f"byte 0x{data[exc.start]:02x} is not UTF-8 (rules files are UTF-8 text)",
            ))
            continue
        try:
            node = yaml.compose(_shield(text), Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = Mark(name, mark.line + 1, mark.column + 1) if mark else Mark(name, 0, 0)
            raw.reporter.diagnostics.append(_syntax(where, f"{exc.problem or 'invalid YAML'}"))
            continue
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (controls)
            raw.reporter.diagnostics.append(_syntax(
                _position(name, text[: exc.position]),
                f"character U+{exc.character:04X} is not allowed in YAML (a control character);"
                " remove it" if isinstance(exc.character, int) else f"invalid YAML ({exc.reason})",
            ))
            continue
        if node is None:
            continue
        if not isinstance(node, yaml.MappingNode):
            raw.reporter.diagnostics.append(
                _syntax(
                    _mark(name, node), "a rules file must be a mapping of sections", NOT_A_MAPPING
                )
            )
            continue
        _merge_file(raw, _Converter(name, raw, env), node)
    raw.digest = digest.hexdigest()[:12]
    return raw


def _position(file: str, before: str) -> Mark:
    """The mark just after ``before``, the text of ``file`` up to some point."""
    return Mark(file, before.count("\n") + 1, len(before) - before.rfind("\n"))


def _syntax(mark: Mark, message: str, code: str = YAML_SYNTAX) -> Diagnostic:
    return Diagnostic(mark, code, (), message)


def _merge_file(raw: RawRules, conv: _Converter, node: yaml.MappingNode) -> None:
    """Merge one file's sections into the tree.

    Mapping sections merge key by key; a key already defined by another file is an error
    (R002) that names both places. List sections (``tests``) are concatenated.
    """
    rep = raw.reporter
    for key_node, value_node in node.value:
        section = str(conv.scalar(key_node))
        if section not in raw.tree:
            rep.key_marks[(section,)] = _mark(conv.file, key_node)
            raw.tree[section] = conv.convert(value_node, (section,))
            continue
        existing = raw.tree[section]
        if isinstance(existing, list) and isinstance(value_node, yaml.SequenceNode):
            for item in value_node.value:
                existing.append(conv.convert(item, (section, len(existing))))
            continue
        if not (isinstance(existing, dict) and isinstance(value_node, yaml.MappingNode)):
            rep.diagnostics.append(
                Diagnostic(
                    _mark(conv.file, key_node),
                    DUPLICATE_KEY,
                    (section,),
                    f"section '{section}' is defined in two files with different shapes",
                )
            )
            continue
        for item_key_node, item_node in value_node.value:
            key = str(conv.scalar(item_key_node))
            path = (section, key)
            if key in existing:
                first = rep.key_marks.get(path)
                rep.diagnostics.append(
                    Diagnostic(
                        _mark(conv.file, item_key_node),
                        DUPLICATE_KEY,
                        path,
                        f"'{key}' is defined in two files",
                        f"also at {first.file}:{first.line}:{first.col}" if first else None,
                    )
                )
                continue
            rep.key_marks[path] = _mark(conv.file, item_key_node)
            existing[key] = conv.convert(item_node, path)
