"""The documentation's YAML examples are checked by the real ``relay check``.

Every fenced ``yaml`` block in ``docs/*.md`` and ``README.md`` is one rules file. It is written
into a temporary copy of a small complete rules set (``tests/docs_base/``) from which the
entries the example defines have been removed first: the loader refuses an entry defined in
two files (R002), and an example should only have to show what it is about. "Entries" are a
section's keys (``relay.cookie``, ``purposes.ads``, ``destinations.archive``, ...); a section
that is a list (``tests``) or not a mapping in the example replaces the base's whole section.

The first line of a block may carry a marker:

    # relay check: R213            the check fails with exactly these codes (a comma list)
    # relay check: warning R214    the check passes, printing exactly these warnings
    # not a rules file             not checked at all; counted, see UNCHECKED

A marked example points at each line a diagnostic is reported on with a trailing comment,
``# <- R213``. Every diagnostic must be at such a line of the example, with that code. An
example without a marker must pass with no diagnostic at all. R002 examples keep the whole
base, so that they can collide with it.

``${VAR}`` names without a default are set to placeholder values (except in an example that
expects R003, an unset variable); nothing else comes from the environment.

``python -m relay check`` spends about half a second starting up, so running one process per
example would make this test slow. The examples run in one child process instead, which
executes the ``relay`` module as ``python -m relay check --rules DIR`` does (``runpy``), once
per directory; ``test_one_process_per_check_gives_the_same_answers`` runs the real command
separately for two examples and checks that both ways agree.
"""

from __future__ import annotations

import io
import json
import os
import re
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BASE = Path(__file__).resolve().parent / "docs_base"
DOCUMENTS = (*sorted(DOCS.glob("*.md")), ROOT / "README.md")

# Blocks marked "# not a rules file". Raise this only together with such a block, and say why
# the block cannot be a rules file; the aim is none.
UNCHECKED = 0
MIN_CHECKED = 60  # fewer would mean the extraction broke, or the reference lost its examples

EXAMPLE_FILE = "example.yaml"  # sorts after BASE_FILE: a collision is reported in the example
BASE_FILE = "base.yaml"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
_CODES = r"(?P<codes>R\d{3}(?:\s*,\s*R\d{3})*)"
_MARKER = re.compile(rf"^#\s*relay check:\s*(?P<warning>warning\s+)?{_CODES}\s*$")
_UNCHECKED = re.compile(r"^#\s*not a rules file\b")
_ARROW = re.compile(rf"#\s*<-\s*{_CODES}\s*$")
_DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>R\d{3}) ")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}\n]*)?\}")
# The environment of every check: enough to run Python, nothing a rule could read.
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR", "PYTHONPATH")


def _codes(text: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in text.split(","))


@dataclass(frozen=True)
class Block:
    """One fenced ``yaml`` block of a document."""

    doc: str  # the document's name, like rules.md
    line: int  # the line of the opening fence
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def unchecked(self) -> bool:
        return bool(_UNCHECKED.match(self.first_line))

    @property
    def expected_codes(self) -> tuple[str, ...]:
        m = _MARKER.match(self.first_line)
        return _codes(m.group("codes")) if m else ()

    @property
    def expects_warnings(self) -> bool:
        m = _MARKER.match(self.first_line)
        return bool(m and m.group("warning"))

    def arrows(self) -> set[tuple[str, int]]:
        """(code, line in the example) for every ``# <- CODE`` comment."""
        out: set[tuple[str, int]] = set()
        for number, line in enumerate(self.text.splitlines(), start=1):
            m = _ARROW.search(line)
            if m:
                out.update((code, number) for code in _codes(m.group("codes")))
        return out


def extract(doc: Path) -> Iterator[Block]:
    """Every fenced ``yaml`` (or ``yml``) block of ``doc``, dedented to its fence."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        info, indent = m.group("info").strip().split(" ")[0].lower(), m.group("indent")
        end = i + 1
        while end < len(lines) and not re.match(r"^[ \t]*```\s*$", lines[end]):
            end += 1
        if info in ("yaml", "yml"):
            body = [line[len(indent):] if line.startswith(indent) else line
                    for line in lines[i + 1:end]]
            yield Block(doc.name, i + 1, "\n".join(body) + "\n")
        i = end + 1


BLOCKS = [block for doc in DOCUMENTS for block in extract(doc)]
CHECKED = [block for block in BLOCKS if not block.unchecked]


# -- building a rules directory for an example --------------------------------------------


def _sections(text: str) -> dict[str, Any] | None:
    """The example's sections as plain YAML sees them (``${...}`` made a plain word, as the
    loader does before parsing), or None when it is not a mapping or not YAML at all."""
    try:
        tree = yaml.safe_load(_VAR.sub("VAR", text))
    except yaml.YAMLError:
        return None
    return {str(k): v for k, v in tree.items()} if isinstance(tree, dict) else None


def _base() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(BASE.glob("*.yaml")):
        for section, value in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
            if isinstance(value, dict) and isinstance(tree.get(section), dict):
                tree[section].update(value)
            else:
                tree[section] = value
    return tree


def rules_dir(block: Block, where: Path) -> Path:
    """A rules directory holding the base without what ``block`` defines, and the block."""
    base = _base()
    example = _sections(block.text)
    if example is not None and "R002" not in block.expected_codes:
        for section, value in example.items():
            theirs = base.get(section)
            if isinstance(value, dict) and isinstance(theirs, dict):
                for key in value:
                    theirs.pop(str(key), None)
                if theirs:
                    continue
            base.pop(section, None)
    where.mkdir(parents=True)
    (where / BASE_FILE).write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    (where / EXAMPLE_FILE).write_text(block.text, encoding="utf-8")
    return where


def placeholder(name: str) -> str:
    """A value for ``${NAME}``: a URL for names ending in ``_URL``, else a long token."""
    if name.endswith("_URL"):
        return "https://hooks.example.com/relay"
    return f"docs-{name.lower()}-0123456789abcdef"


def environment(block: Block) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
    if "R003" not in block.expected_codes:
        for m in _VAR.finditer(block.text):
            if m.group(2) is None:
                env[m.group(1)] = placeholder(m.group(1))
    return env


# -- running relay check -------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    code: int
    stdout: str
    stderr: str

    def diagnostics(self, stream: str) -> list[tuple[str, str, int]]:
        """(file name, code, line) of each diagnostic line of ``stream``."""
        out = []
        for line in stream.splitlines():
            m = _DIAGNOSTIC.match(line)
            if m:
                out.append((Path(m.group("file")).name, m.group("code"), int(m.group("line"))))
        return out


def run_checks(jobs: list[tuple[Path, dict[str, str]]]) -> list[Checked]:
    """``relay check --rules DIR`` for every (DIR, environment), in one child process."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, answers = Path(tmp) / "jobs.json", Path(tmp) / "answers.json"
        spec.write_text(json.dumps([{"dir": str(d), "env": env} for d, env in jobs]))
        env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
        done = subprocess.run(
            [sys.executable, "-m", "tests.test_docs", str(spec), str(answers)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr
        return [Checked(**a) for a in json.loads(answers.read_text())]


def relay_check(rules: Path, env: dict[str, str]) -> Checked:
    """``python -m relay check --rules DIR`` in this process, as the command line runs it."""
    os.environ.clear()
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["relay", "check", "--rules", str(rules)]
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            runpy.run_module("relay", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Checked(code, out.getvalue(), err.getvalue())


def main(spec: str, answers: str) -> None:
    """The child process of ``run_checks``."""
    jobs = json.loads(Path(spec).read_text())
    results = [relay_check(Path(job["dir"]), job["env"]).__dict__ for job in jobs]
    Path(answers).write_text(json.dumps(results))


@pytest.fixture(scope="module")
def checked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Checked]:
    """The check of every example this session runs, by block id, done in one batch."""
    wanted = {
        item.callspec.params["block"].id
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("block"), Block)
    }
    blocks = [b for b in CHECKED if b.id in wanted]
    root = tmp_path_factory.mktemp("docs")
    jobs = [(rules_dir(b, root / f"{i:03d}"), environment(b)) for i, b in enumerate(blocks)]
    return dict(zip((b.id for b in blocks), run_checks(jobs), strict=True))


def _explain(block: Block, result: Checked) -> str:
    return (f"\n--- {block.id} ---\n{block.text}--- relay check exited {result.code} ---\n"
            f"{result.stdout}{result.stderr}")


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_example(block: Block, checked: dict[str, Checked]) -> None:
    result = checked[block.id]
    why = _explain(block, result)
    errors = result.diagnostics(result.stderr)
    warnings = result.diagnostics(result.stdout)
    everything = {(code, line) for file, code, line in errors + warnings if file == EXAMPLE_FILE}
    assert all(file == EXAMPLE_FILE for file, _, _ in errors + warnings), "the base broke" + why
    codes = block.expected_codes
    if not codes:
        assert result.code == 0 and not errors and not warnings, why
        assert not block.arrows(), f"an arrow without a marker on the first line{why}"
        return
    assert {code for code, _ in block.arrows()} == set(codes), (
        f"the marker lists {', '.join(codes)}: point at each with '# <- CODE'{why}")
    assert everything == block.arrows(), why
    if block.expects_warnings:
        assert result.code == 0 and not errors, why
    else:
        assert result.code == 1 and not warnings, why


def test_every_yaml_example_is_checked() -> None:
    skipped = [b.id for b in BLOCKS if b.unchecked]
    assert len(skipped) == UNCHECKED, f"blocks marked '# not a rules file': {skipped}"
    assert len(CHECKED) >= MIN_CHECKED
    assert {b.doc for b in CHECKED} >= {"rules.md", "http.md"}


def test_one_process_per_check_gives_the_same_answers(tmp_path: Path) -> None:
    """The batch (``run_checks``) answers as ``python -m relay check`` does on its own."""
    passing = next(b for b in CHECKED if not b.expected_codes)
    failing = next(b for b in CHECKED if b.expected_codes and not b.expects_warnings)
    jobs = [(rules_dir(b, tmp_path / str(i)), environment(b))
            for i, b in enumerate((passing, failing))]
    batched = run_checks(jobs)
    for (rules, env), together in zip(jobs, batched, strict=True):
        alone = subprocess.run(
            [sys.executable, "-m", "relay", "check", "--rules", str(rules)],
            env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        )
        assert (alone.returncode, alone.stdout, alone.stderr) == (
            together.code, together.stdout, together.stderr)
    assert [c.code for c in batched] == [0, 1]


# -- links ---------------------------------------------------------------------------------

_CODE_BLOCK = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def prose(path: Path) -> str:
    """The document without its fenced code blocks and inline code."""
    text = _CODE_BLOCK.sub("", path.read_text(encoding="utf-8"))
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the document's headings: lowercase, without punctuation but
    '-' and '_', spaces as '-', and '-1', '-2', ... for repeats."""
    out: set[str] = set()
    for line in _CODE_BLOCK.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n, unique = 0, slug
        while unique in out:
            n += 1
            unique = f"{slug}-{n}"
        out.add(unique)
    return out


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_links_resolve(doc: Path) -> None:
    """Every relative link names a file of the repository, and a heading when it has '#'."""
    for m in _LINK.finditer(prose(doc)):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(path), f"{doc.name}: no heading for {target}"


def test_every_code_mentioned_links_to_its_section_of_errors_md() -> None:
    errors = DOCS / "errors.md"
    section: dict[str, str] = {}
    heading = ""
    for line in _CODE_BLOCK.sub("", errors.read_text(encoding="utf-8")).splitlines():
        if line.startswith("#"):
            heading = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        m = re.match(r"^\| (R\d{3}) \|", line)
        if m:
            section[m.group(1)] = heading
    for doc in DOCUMENTS:
        if doc in (errors, ROOT / "README.md"):
            continue
        text = prose(doc)
        defined = dict(re.findall(r"^\[(R\d{3})\]: errors\.md#(\S+)$", text, re.MULTILINE))
        for code in sorted(set(re.findall(r"\bR\d{3}\b", text))):
            assert code in section, f"{doc.name} mentions {code}, which errors.md does not list"
            assert defined.get(code) == section[code], (
                f"{doc.name}: define [{code}]: errors.md#{section[code]}")
        bare = re.findall(r"(?<!\[)\bR\d{3}\b(?!\])", text)
        assert not bare, f"{doc.name}: write codes as links, [R104]: {sorted(set(bare))}"


def test_no_link_to_files_a_clone_does_not_have() -> None:
    documents = [p for p in DOCS.rglob("*") if p.is_file()] + [ROOT / "README.md"]
    for path in documents:
        data = path.read_bytes()  # docs/img holds pictures, not text
        for word in ("../shared", "SPEC.md"):
            assert word.encode() not in data, f"{path.relative_to(ROOT)} mentions {word}"


if __name__ == "__main__":
    main(*sys.argv[1:])
