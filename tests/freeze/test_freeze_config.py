"""The recipe's freeze section: policy normalisation, thresholds, stages, multipliers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tlkit.freeze.config import FreezeConfig, Stage, parse_policy


@pytest.mark.parametrize(
    "value,expected",
    [
        ("auto", "auto"),
        (" ALL ", "all"),
        ("none", "none"),
        (10, "10"),
        ("010", "10"),
        (0, "0"),
        (12.0, "12"),
        ("Block4", "block4"),
        ("conv4_block2", "conv4_block2"),
        ("inception4c", "inception4c"),
    ],
)
def test_policy_values(value, expected):
    assert parse_policy(value) == expected
    assert FreezeConfig(policy=value).policy == expected


@pytest.mark.parametrize("value", [-1, "-3", "1.5", 2.5, True, "block 4", "", None, [4]])
def test_bad_policies_explain_what_is_expected(value):
    with pytest.raises(ValidationError) as err:
        FreezeConfig(policy=value)
    text = str(err.value)
    assert "policy" in text
    assert "0 or more" in text or "block/group name" in text


def test_defaults():
    config = FreezeConfig()
    assert config.policy == "auto" and config.bn == "auto" and config.stages == []
    assert config.linear_probe and config.auto.search
    assert config.auto.small_per_class == 100 and config.auto.large_per_class == 1000
    assert config.lr_multipliers == {}


def test_strict_keys_and_values():
    with pytest.raises(ValidationError):
        FreezeConfig(polcy="all")
    with pytest.raises(ValidationError):
        FreezeConfig(bn="sometimes")
    with pytest.raises(ValidationError, match="must not exceed"):
        FreezeConfig(auto={"small_per_class": 500, "large_per_class": 100})
    with pytest.raises(ValidationError, match="0 or more"):
        FreezeConfig(lr_multipliers={"block5": -1})
    with pytest.raises(ValidationError):
        FreezeConfig(stages=[{"policy": "all", "epochs": 0}])


def test_stages():
    config = FreezeConfig(
        stages=[{"policy": "all", "epochs": 2}, {"policy": 10, "epochs": 3, "lr": 1e-4}],
        lr_multipliers={"Block5": 0.1},
    )
    assert [s.policy for s in config.stages] == ["all", "10"]
    assert config.stages[1].lr == 1e-4 and config.lr_multipliers == {"block5": 0.1}
    assert config.effective_stages(7) == config.stages
    assert FreezeConfig(policy="block4").effective_stages(7) == [Stage(policy="block4", epochs=7)]


def test_importing_the_config_does_not_import_tensorflow():
    code = (
        "import sys, tlkit.freeze; from tlkit.freeze import FreezeConfig; FreezeConfig(); "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
