"""A small reader of Dockerfile instructions, for the tests of deploy/Dockerfile."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_CONTINUED = re.compile(r"\\\n")


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM's stage, 1 for the next, ...
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, its continuation lines joined

    def words(self) -> list[str]:
        """The arguments as a list: JSON (exec) form as written, else split as a shell would."""
        text = self.args.strip()
        if text.startswith("["):
            words: list[str] = json.loads(text)
            return words
        return shlex.split(text)


def instructions(path: Path) -> list[Instruction]:
    """Each instruction of the Dockerfile at ``path``, comments and blank lines left out."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = _CONTINUED.sub(" ", "\n".join(lines) + "\n")
    out: list[Instruction] = []
    stage = -1
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(max(stage, 0), keyword, args.strip()))
    return out


def ignore_allows(dockerignore: Path, path: str) -> bool:
    """Whether a ``.dockerignore`` of the form "``*`` then ``!name`` lines" sends ``path``."""
    allowed = [ln[1:].strip().rstrip("/") for ln in dockerignore.read_text().splitlines()
               if ln.startswith("!")]
    top = path.strip("/").split("/")[0]
    return top in allowed
