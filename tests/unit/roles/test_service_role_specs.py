# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reference_service and benchmark roles: one argument spec, matching the defaults."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"


def load(role, path):
    return yaml.safe_load((ROLES / role / path).read_text())


@pytest.mark.parametrize(
    ("role", "same_options"),
    [("reference_service", ["venv"]), ("benchmark", ["baseline"])],
)
def test_entry_points_share_the_main_spec_and_it_matches_the_defaults(role, same_options):
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert specs["validate"] == specs["main"]
    for entry in same_options:
        assert specs[entry]["options"] == options
    defaults = load(role, "defaults/main.yml")
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name
