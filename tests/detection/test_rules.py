"""The rules file: shipped defaults, overrides, and clear errors."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from usermon.processor.detectors import default_detectors
from usermon.processor.model import FINDING_KINDS
from usermon.processor.rules import Rules, RulesError, default_rules_text, load_rules

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, "utf-8")
    return path


def test_the_shipped_file_and_the_code_defaults_agree() -> None:
    assert load_rules(environ={}) == Rules()


def test_every_default_key_is_commented_in_the_shipped_file() -> None:
    text = default_rules_text()
    for section in Rules.__dataclass_fields__:
        assert f"[{section}]" in text


def test_a_file_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "[brute_force]\nfailures = 5\n"))
    assert rules.brute_force.failures == 5
    assert rules.brute_force.window == Rules().brute_force.window
    assert rules.credential_stuffing == Rules().credential_stuffing


def test_usermon_rules_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "[signup_abuse]\nsignups = 50\n")
    assert load_rules(environ={"USERMON_RULES": str(path)}).signup_abuse.signups == 50


def test_an_explicit_path_wins_over_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[signup_abuse]\nsignups = 7\n")
    rules = load_rules(path, environ={"USERMON_RULES": str(tmp_path / "absent.toml")})
    assert rules.signup_abuse.signups == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[brute_forse]\nfailures = 5\n", "unknown section [brute_forse]"),
        ("[brute_force]\nfailure = 5\n", "unknown key 'failure' in [brute_force]"),
        ("[brute_force]\nfailures = 0\n", "[brute_force] failures must be a whole number >= 1"),
        ("[brute_force]\nfailures = 2.5\n", "must be a whole number"),
        ("[brute_force]\nfailures = true\n", "must be a whole number"),
        ("[brute_force]\nwindow = -1\n", "[brute_force] window must be a number > 0"),
        ("[brute_force]\nenabled = 1\n", "must be true or false"),
        ("[credential_stuffing]\nmax_success_ratio = 1.5\n", "between 0 and 1"),
        ('[tor_login]\nsuccess_severity = "severe"\n', "one of low, medium, high, critical"),
        ('[vpn_or_hosting_login]\ncategories = ["cloud"]\n', "hosting, vpn, proxy, tor"),
        ("[password_spraying]\nipv4_prefix = 33\n", "between 0 and 32"),
        ("[brute_force]\nhigh_failures = 5\n", "high_failures must be >= failures"),
        ("[campaigns]\nlearn = 3600\n", "[campaigns] learn must be longer than window"),
        ("[campaigns]\nwindow = 7200\nlearn = 3600\n", "learn must be longer than window"),
        ("[campaigns]\nlearn = 1209600\n", "learn must be longer than window and at most baseline"),
        ("brute_force = 3\n", "[brute_force] must be a table"),
        ("[brute_force\n", "not valid TOML"),
    ],
)
def test_mistakes_are_named_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")


def test_default_detectors_cover_every_finding_kind() -> None:
    # One detector per kind, and the service-wide campaigns (which report stuffing and signup
    # abuse on a service rather than on an address).
    names = sorted(d.name for d in default_detectors(Rules()))
    assert names == sorted([*FINDING_KINDS, "campaigns"])


def test_a_disabled_section_removes_its_detector(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "[impossible_travel]\nenabled = false\n"))
    names = {d.name for d in default_detectors(rules)}
    assert "impossible_travel" not in names
    assert len(names - {"campaigns"}) == len(FINDING_KINDS) - 1


def test_every_key_is_in_the_shipped_file_and_in_the_documentation() -> None:
    shipped = tomllib.loads(default_rules_text())
    docs = (Path(__file__).parents[2] / "docs" / "detection.md").read_text("utf-8")
    for section in dataclasses.fields(Rules):
        for key in dataclasses.fields(getattr(Rules(), section.name)):
            assert key.name in shipped[section.name], f"[{section.name}] {key.name} not shipped"
            if key.name != "enabled":
                assert f"`{key.name}`" in docs or f"{key.name}`" in docs, (
                    f"[{section.name}] {key.name} is not documented in docs/detection.md"
                )
