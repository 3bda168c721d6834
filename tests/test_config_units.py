"""The shared config building blocks: one strict base for every section (a bool is `true`, never
"yes", in every section alike), and the leaf module that config and early/config both build on."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from sentinel.config import ConfigError, parse_config
from sentinel.parse.file import EmailSection
from sentinel.parse.units import StrictSection
from test_example_config import schema_sections

REQUIRED: dict[str, dict[str, Any]] = {
    "sites": {"name": "a", "url": "http://a.example/"},
    "email": {"from": "s@example.org", "to": ["o@example.org"]},
    "watch": {"name": "w", "unit": "w.service"},
}


def _bool_fields() -> list[tuple[str, str]]:
    found = []
    for section, model in schema_sections().items():
        for name, info in model.model_fields.items():
            if info.annotation in (bool, bool | None):
                found.append((section, info.alias or name))
    return found


def _document(section: str, key: str, value: object) -> dict[str, Any]:
    table = {**REQUIRED.get(section, {}), key: value}
    if section in ("sites", "watch"):
        return {section: [table]}
    return {section: table}


def test_every_section_model_has_the_one_strict_base() -> None:
    models: list[type[BaseModel]] = list(schema_sections().values())
    assert EmailSection in models
    assert [m.__name__ for m in models if not issubclass(m, StrictSection)] == []


@pytest.mark.parametrize(("section", "key"), _bool_fields())
def test_a_bool_is_true_or_false_never_yes_in_every_section(section: str, key: str) -> None:
    parse_config(_document(section, key, True))
    with pytest.raises(ConfigError) as info:
        parse_config(_document(section, key, "yes"))
    (line,) = info.value.errors
    assert key in line and "valid boolean" in line


def test_self_watch_yes_is_refused_like_precise_latency_yes() -> None:
    assert ("host", "self_watch") in _bool_fields()
    assert ("sentinel", "precise_latency") in _bool_fields()


def test_config_units_is_a_leaf_and_the_config_modules_import_without_a_circle() -> None:
    """Each module imports first, in a fresh interpreter: a circle would fail one of them."""
    for module in ("sentinel.config_units", "sentinel.early.config", "sentinel.config"):
        run = subprocess.run(
            [sys.executable, "-c", f"import {module}; import sys; print(len(sys.modules))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
    leaf = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sentinel.config_units; "
            "print(sorted(m for m in sys.modules if m.startswith('sentinel.')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert leaf.stdout.strip() == "['sentinel.config_units', 'sentinel.sanitize']"
