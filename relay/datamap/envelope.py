"""The fields an event can carry into a destination's pipeline, as a ``FieldSet``.

The envelope's keys (``relay.engine.envelope.ENVELOPE_KEYS``) with the fields of ``user`` and
``context`` the relay and the vendor mappings know by name; ``user``, ``context`` and
``consent`` are open objects, so each also has ``*`` (any other key). ``properties`` follows
the event's contract: its declared properties, and ``*`` too when the contract is open
(``additional_properties: keep``, the default, or no contract under ``"*": accept``).

    >>> [p for p, _ in envelope(Contract("purchase", properties={"value": FieldSpec()},
    ...                                  additional_properties="drop")).paths()
    ...  if p.startswith("properties")]
    ['properties.value']
"""

from __future__ import annotations

from relay.engine.envelope import ENVELOPE_KEYS, RELAY_CONTEXT_KEYS
from relay.fieldset import LEAF, Branch, FieldSet, Node
from relay.rules.model import Contract

USER_FIELDS = ("id", "email", "phone", "first_name", "last_name", "date_of_birth", "gender")
ADDRESS_FIELDS = ("street", "city", "region", "postal_code", "country")
PAGE_FIELDS = ("url", "referrer", "title", "search", "path")
# Set by the relay for browsers (RELAY_CONTEXT_KEYS), or sent by a backend; ``locale`` is
# the browser's language (TikTok takes it).
CONTEXT_FIELDS = (*RELAY_CONTEXT_KEYS, "locale")
# Objects of any keys: click ids by name, the campaign (``utm`` step), the device
# (``user_agent: device``), the browser's cookies a backend forwards (``_fbp``, ``_ttp``).
CONTEXT_OBJECTS = ("click_ids", "campaign", "device", "cookies")


def _open(*names: str, **objects: Node) -> Branch:
    return Branch({**{n: LEAF for n in names}, **objects}, other=LEAF)


USER = _open(*USER_FIELDS, address=_open(*ADDRESS_FIELDS))
CONTEXT = _open(*CONTEXT_FIELDS, page=_open(*PAGE_FIELDS),
                **{name: Branch(other=LEAF) for name in CONTEXT_OBJECTS})
SHAPES: dict[str, Node] = {"user": USER, "context": CONTEXT, "consent": Branch(other=LEAF)}


def properties(contract: Contract | None) -> Branch:
    """What ``properties`` can hold under ``contract`` (None: no contract, any property)."""
    if contract is None:
        return Branch(other=LEAF)
    declared = {name: LEAF for name in contract.properties}
    return Branch(declared, LEAF if contract.additional_properties == "keep" else None)


def envelope(contract: Contract | None) -> FieldSet:
    """Every field an event under ``contract`` can carry into a pipeline."""
    keys: dict[str, Node | None] = {key: SHAPES.get(key, LEAF) for key in sorted(ENVELOPE_KEYS)}
    keys["properties"] = properties(contract)
    return FieldSet(Branch(keys))
