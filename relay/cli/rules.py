"""``relay check`` and ``relay test``."""

from __future__ import annotations

import argparse
import asyncio

from relay.cli.common import load
from relay.testing import run_tests


def cmd_check(args: argparse.Namespace) -> int:
    rules = load(args.rules, strict=args.strict)
    if rules is None:
        return 1
    print(
        f"ok: {len(rules.files)} file(s), {len(rules.destinations)} destination(s), "
        f"{len(rules.tests)} test(s), rules version {rules.version}"
    )
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    rules = load(args.rules)
    if rules is None:
        return 1
    results = asyncio.run(run_tests(rules))
    failed = [r for r in results if not r.passed]
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'} {r.name}")
        for line in r.failures:
            print("  " + line.replace("\n", "\n  "))
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
