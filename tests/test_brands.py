"""Several Re:amaze brands in one config: ``[brands.NAME]`` tables, a pair's ``brand``, and
the errors when either is wrong."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from syncer.config import SINGLE_BRAND, AppConfig, parse_config
from syncer.errors import ConfigError

ENV = {"ACME_TOKEN": "acme-token", "GLOBEX_TOKEN": "globex-token",
       "REDMINE_API_KEY": "rm-key", "REAMAZE_SYNC_MARKER_KEY": "0123456789abcdef0123"}

TWO_BRANDS: dict[str, Any] = {
    "brands": {
        "acme": {"brand": "acme", "login_email": "bot@acme.example",
                 "api_token_env": "ACME_TOKEN"},
        "globex": {"brand": "globex", "login_email": "bot@globex.example",
                   "api_token_env": "GLOBEX_TOKEN", "overlap_seconds": 30},
    },
    "trackers": {"main": {"kind": "redmine", "base_url": "https://r.example",
                          "project": "web"}},
    "pairs": [{"name": "acme-bugs", "tracker": "main", "brand": "acme"},
              {"name": "globex-bugs", "tracker": "main", "brand": "globex"}],
}


def two_brands() -> dict[str, Any]:
    return copy.deepcopy(TWO_BRANDS)


def problems(data: dict[str, Any], **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)
    return str(info.value).splitlines()


def test_named_brands_each_pair_gets_its_own() -> None:
    """Each [brands.NAME] is a brand with [reamaze]'s keys; a pair's brand picks one."""
    cfg = parse_config(two_brands(), need_secrets=True, environ=ENV)
    assert cfg.reamaze is None
    assert sorted(cfg.brands) == ["acme", "globex"]
    assert cfg.brands["globex"].api_base() == "https://globex.reamaze.io/api/v1"
    assert cfg.brands["globex"].overlap_seconds == 30
    acme, globex = cfg.pairs
    assert (cfg.brand_of(acme), cfg.brand_of(globex)) == ("acme", "globex")
    assert cfg.brand_section("globex") == "brands.globex"
    assert cfg.brand_service("globex") == "reamaze:globex"


def test_reamaze_table_is_the_brand_named_reamaze() -> None:
    """The [reamaze] form is one brand, named ``reamaze``, which every pair syncs."""
    data = two_brands()
    data["reamaze"] = data.pop("brands")["acme"]
    for pair in data["pairs"]:
        del pair["brand"]
    cfg = parse_config(data)
    assert list(cfg.brands) == [SINGLE_BRAND] == ["reamaze"]
    assert cfg.brands["reamaze"] is cfg.reamaze
    assert {cfg.brand_of(p) for p in cfg.pairs} == {"reamaze"}
    assert (cfg.brand_section("reamaze"), cfg.brand_service("reamaze")) == ("reamaze",
                                                                            "reamaze")


def test_one_named_brand_needs_no_brand_on_the_pairs() -> None:
    data = two_brands()
    del data["brands"]["globex"]
    data["pairs"] = [{"name": "p", "tracker": "main"}]
    cfg = parse_config(data)
    assert cfg.brand_of(cfg.pairs[0]) == "acme"
    assert cfg.brand_service("acme") == "reamaze:acme"


def test_reamaze_and_brands_together_are_refused() -> None:
    data = two_brands()
    data["reamaze"] = {"brand": "initech", "login_email": "bot@initech.example"}
    assert problems(data) == [
        "[config] brands: cannot be used together with [reamaze]: configure one brand as "
        "[reamaze], or every brand as [brands.NAME]"]


def test_no_brand_at_all_is_refused() -> None:
    data = two_brands()
    data["brands"] = {}
    assert problems(data) == [
        "[config] brands: no brand: add a [brands.NAME] table for each Re:amaze brand (or "
        "one [reamaze] table)"]


def test_a_pair_must_name_its_brand_when_there_are_several() -> None:
    data = two_brands()
    del data["pairs"][1]["brand"]
    assert problems(data) == [
        "[pairs[1]] brand: missing: the config has several brands, name one (known: acme, "
        "globex)"]


def test_unknown_brand_lists_the_known_ones() -> None:
    """Worded like an unknown tracker, and reported with the other problems at once."""
    data = two_brands()
    data["pairs"][0]["brand"] = "acmee"
    data["pairs"][1]["tracker"] = "nope"
    assert problems(data) == [
        "[pairs[0]] brand: unknown brand 'acmee' (known: acme, globex)",
        "[pairs[1]] tracker: unknown tracker 'nope' (known: main)"]


def test_unknown_brand_is_reported_next_to_field_errors() -> None:
    """A field error elsewhere does not hide a pair's bad brand."""
    data = two_brands()
    data["pairs"][0]["brand"] = "acmee"
    data["brands"]["globex"]["login_email"] = "not an email"
    lines = problems(data)
    assert lines[0].startswith("[brands.globex] login_email: ")
    assert "[pairs[0]] brand: unknown brand 'acmee' (known: acme, globex)" in lines


def test_field_errors_in_a_brand_name_its_table() -> None:
    data = two_brands()
    data["brands"]["globex"]["colour"] = "red"
    data["brands"]["globex"]["http"] = {"requests_per_minute": 0}
    lines = problems(data)
    assert "[brands.globex] colour: unknown key" in lines
    assert any(line.startswith("[brands.globex.http] requests_per_minute: ")
               for line in lines), lines


def test_a_brand_name_that_is_not_a_name_is_reported_as_such() -> None:
    data = two_brands()
    data["brands"]["acme corp"] = data["brands"].pop("acme")
    data["pairs"][0]["brand"] = "acme corp"
    lines = problems(data)
    assert lines[0].startswith("[brands] acme corp: not a valid name (String should match "
                               "pattern"), lines


def test_a_pair_naming_the_single_reamaze_brand_is_accepted_and_others_refused() -> None:
    data = two_brands()
    data["reamaze"] = data.pop("brands")["acme"]
    data["pairs"][0]["brand"] = "reamaze"
    assert problems(data) == ["[pairs[1]] brand: unknown brand 'globex' (known: reamaze)"]


def test_missing_token_is_reported_per_brand() -> None:
    """Every brand a used pair syncs needs its token, each named by its table."""
    env = {k: v for k, v in ENV.items() if k not in ("ACME_TOKEN", "GLOBEX_TOKEN")}
    assert problems(two_brands(), need_secrets=True, environ=env) == [
        "[brands.acme] api_token_env: environment variable ACME_TOKEN is not set "
        "(used by pair 'acme-bugs')",
        "[brands.globex] api_token_env: environment variable GLOBEX_TOKEN is not set "
        "(used by pair 'globex-bugs')"]
    only_globex = {k: v for k, v in ENV.items() if k != "GLOBEX_TOKEN"}
    assert problems(two_brands(), need_secrets=True, environ=only_globex) == [
        "[brands.globex] api_token_env: environment variable GLOBEX_TOKEN is not set "
        "(used by pair 'globex-bugs')"]


def test_a_command_on_one_pair_needs_only_its_brands_token() -> None:
    env = {k: v for k, v in ENV.items() if k != "GLOBEX_TOKEN"}
    cfg = parse_config(two_brands(), pair="acme-bugs", need_secrets=True, environ=env)
    assert cfg.pair("acme-bugs").brand == "acme"
    assert problems(two_brands(), pair="globex-bugs", need_secrets=True, environ=env) == [
        "[brands.globex] api_token_env: environment variable GLOBEX_TOKEN is not set "
        "(used by pair 'globex-bugs')"]


def test_a_dump_validates_again_in_both_forms() -> None:
    """``brands`` holds the [reamaze] brand too, but a dump says what the file said."""
    named = parse_config(two_brands())
    assert AppConfig.model_validate(named.model_dump()) == named
    data = two_brands()
    data["reamaze"] = data.pop("brands")["acme"]
    for pair in data["pairs"]:
        del pair["brand"]
    single = parse_config(data)
    assert single.model_dump()["brands"] == {}
    again = AppConfig.model_validate(single.model_dump())
    assert again == single and list(again.brands) == ["reamaze"]


EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_the_examples_two_brands_are_a_valid_config() -> None:
    """The commented two-brand example, as tables and inline, configures the same brands."""
    text = EXAMPLE.read_text()
    block = text[text.index("# [brands.acme]"):text.index("# The same two brands")]
    tables = tomllib.loads("\n".join(line.removeprefix("#").strip()
                                     for line in block.splitlines()))
    line = re.search(r"^# (brands = .*)$", text, re.M)
    assert line is not None
    inline = tomllib.loads(line.group(1))
    assert tables == inline
    data = two_brands()
    data["brands"] = tables["brands"]
    cfg = parse_config(data)
    assert {n: (b.brand, b.api_token_env) for n, b in cfg.brands.items()} == {
        "acme": ("acme", "ACME_REAMAZE_TOKEN"), "globex": ("globex", "GLOBEX_REAMAZE_TOKEN")}
