"""``FieldSet``: the datamap's algebra of the fields an event can carry."""

from __future__ import annotations

from relay.fieldset import HASHED, LEAF, Branch, FieldSet, shape, split


def test_paths_are_sorted_with_wildcards_and_hash_marks() -> None:
    fs = FieldSet.of(["user.email", "user.*", "context.ip", "event"])
    assert fs.paths() == [("context.ip", False), ("event", False), ("user.*", False),
                          ("user.email", False)]
    assert fs.hash("user.email").paths()[-1] == ("user.email", True)


def test_a_dropped_key_stays_absent_under_a_wildcard() -> None:
    fs = FieldSet.of(["context.*"]).drop("context.ip")
    assert not fs.has("context.ip")
    assert fs.has("context.page.url")  # any other key, and what is below it
    assert fs.paths() == [("context.*", False)]
    assert fs.match("context.ip") == [] and fs.match("context.*") == [(("*",), False)]


def test_dropping_below_a_whole_value_keeps_the_rest_of_it() -> None:
    fs = FieldSet.of(["context"]).drop("context.page.url")
    assert not fs.has("context.page.url") and fs.has("context.page.title")
    assert fs.has("context.ip")
    assert FieldSet.of(["a"]).drop("b.c") == FieldSet.of(["a"]).drop("b")  # nothing to drop


def test_hash_marks_only_what_can_be_there() -> None:
    fs = FieldSet.of(["user.email"]).hash("user.phone").hash("user.email")
    assert fs.paths() == [("user.email", True)]
    assert FieldSet.of(["user.*"]).hash("user.email").paths() == [
        ("user.*", False), ("user.email", True)]
    nested = FieldSet.of(["user.address.city"]).hash("user.address")  # an object: hashed or gone
    assert nested.paths() == [("user.address", True)]
    assert not nested.has("user.address.city")


def test_put_makes_parents_and_replaces() -> None:
    fs = FieldSet.of(["event"]).put("context.app.name").put("event", HASHED)
    assert fs.paths() == [("context.app.name", False), ("event", True)]
    assert FieldSet.of(["user.email"]).hash("user.email").put("user.email.x").paths() == [
        ("user.email.x", False)]  # a hashed string is no object: it is replaced
    assert shape({"a": {"b": 1}, "c": [1]}) == Branch({"a": Branch({"b": LEAF}), "c": LEAF})


def test_merge_is_either() -> None:
    device = Branch({"type": LEAF, "os": LEAF})
    assert FieldSet().merge("context.device", device).paths() == [
        ("context.device.os", False), ("context.device.type", False)]
    open_device = FieldSet.of(["context.device.*"]).merge("context.device", device)
    assert open_device.paths() == [("context.device.*", False), ("context.device.os", False),
                                   ("context.device.type", False)]
    # a hashed key merged with any-other-key may arrive either way: not hashed
    merged = FieldSet.of(["user.email"]).hash("user.email").merge("user", Branch(other=LEAF))
    assert ("user.email", False) in merged.paths()


def test_only_keeps_the_listed_paths_and_the_always_kept_keys() -> None:
    fs = FieldSet.of(["event", "user.email", "user.id", "properties.*", "context.ip"])
    kept = fs.only(["user.email", "properties.value", "context.nope"], always=("event",))
    assert kept.paths() == [("event", False), ("properties.value", False),
                            ("user.email", False)]
    assert fs.only(["user"]).paths() == [("user.email", False), ("user.id", False)]


def test_match_binds_wildcards_and_reads_lists() -> None:
    fs = FieldSet.of(["properties.value", "properties.*", "user.email"]).hash("user.email")
    assert fs.match("properties.*") == [(("value",), False), (("*",), False)]
    assert fs.match("properties.items[].price") == [((), False)]  # any property: a list too
    assert fs.match("user.email") == [((), True)]
    assert fs.match("user.email[]") == []  # a hash is a string, not a list
    closed = FieldSet.of(["properties.value"])
    assert closed.match("properties.items[].*") == [] and closed.match("properties") == [
        ((), False)]
    assert FieldSet.of(["properties.items"]).match("properties.items[].*") == [(("*",), False)]
    assert split("a.items[].b") == ("a", "items", "[]", "b")
