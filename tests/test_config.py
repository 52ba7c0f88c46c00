"""The config loader and the self-validating recipe schema.

Each test names the mutation it exists to catch.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from ssl_video.config import Section, bounded, from_dict, load_config, parse_overrides, to_dict
from ssl_video.errors import ConfigError, UserError
from ssl_video.recipe import Recipe, load_recipe, recipe_dict


@dataclass
class Inner(Section):
    count: int = bounded(1, ge=1)
    low: float = 0.0
    high: float = 1.0

    def check(self) -> None:
        if self.high <= self.low:
            raise ConfigError("high", "must be above low")


@dataclass
class Outer(Section):
    name: str = "x"
    rate: float = bounded(0.5, gt=0, le=1)
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    items: list[int] = field(default_factory=list)


def test_unknown_key_names_the_full_dotted_key():
    # mutation: from_dict ignoring unknown keys (a typo silently dropped)
    with pytest.raises(ConfigError, match=r"'inner\.cuont': unknown key \(known keys here: count, high, low\)"):
        from_dict(Outer, {"inner": {"cuont": 3}})


@pytest.mark.parametrize("data, key, words", [
    ({"rate": 0}, "rate", "must be > 0 and <= 1, got 0"),
    ({"rate": 1.5}, "rate", "<= 1"),
    ({"inner": {"count": 0}}, "inner.count", ">= 1"),
    ({"maybe": {"count": -2}}, "maybe.count", ">= 1"),  # Optional[section]: the section's own message
    ({"inner": {"low": 2.0}}, "inner.high", "must be above low"),  # a rule between fields, prefixed
    ({"rate": "fast"}, "rate", "expected a number"),
    ({"items": [1, "b"]}, "items[1]", "expected an integer"),
])
def test_bounds_types_and_rules_name_the_key(data, key, words):
    # mutations: bounds not checked; a section's relative key not prefixed with where it sits; Optional[X]
    # swallowing X's error into "expected Inner"; list items not checked one by one
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data)
    assert info.value.key == key and words in str(info.value)


def test_sections_check_themselves_when_built_in_code_too():
    # mutation: validation only in the loader (a section built in Python would skip it)
    with pytest.raises(ConfigError, match="'count'"):
        Inner(count=0)
    assert Outer(inner=Inner(count=3)).inner.count == 3


def test_overrides_are_yaml_values_on_dotted_keys(tmp_path):
    # mutation: override values kept as strings (rate=0.25 would be refused as "expected a number" or
    # compared as text)
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  count: 2\n")
    cfg = load_config(Outer, path, ["inner.high=4", "rate=0.25", "items=[1, 2]"])
    assert (cfg.name, cfg.inner.count, cfg.inner.high, cfg.rate, cfg.items) == ("y", 2, 4.0, 0.25, [1, 2])
    assert load_config(Outer, None, ["rate=1e-1"]).rate == 0.1  # YAML reads 1e-1 as text; the float field takes it
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["rate"])
    assert to_dict(cfg)["inner"] == {"count": 2, "low": 0.0, "high": 4.0}


def test_recipe_method_and_cross_section_rules():
    # mutations: an unknown method accepted (it would fail hours later); a method's needs of other sections
    # (STiCA's audio) checked only at run time
    with pytest.raises(ConfigError, match=r"'method': unknown method 'stika' \(did you mean 'stica'\?"):
        load_recipe(base={"method": "stika"})
    with pytest.raises(ConfigError, match=r"'data\.clip\.audio'"):
        load_recipe(base={"method": "stica", "data": {"clip": {"audio": None}}})
    with pytest.raises(ConfigError, match=r"'trainer\.log_every': must be >= 1"):
        load_recipe(overrides=["trainer.log_every=0"])


def test_recipe_dict_keeps_only_the_active_method_section():
    # mutation: config.yaml (and the resume comparison) carrying every method's section
    data = recipe_dict(load_recipe(base={"method": "tsp", "data": {"dataset": "tsp"}}))
    assert "tsp" in data and "stica" not in data and "finetune" not in data
    assert load_recipe(base=data) == Recipe(method="tsp", data=Recipe().data.__class__(dataset="tsp"))


def test_loading_a_recipe_imports_no_torch():
    # mutation: the schema importing a torch-backed module (config show then takes seconds)
    code = "import sys, ssl_video.recipe, ssl_video.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
