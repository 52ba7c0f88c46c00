"""docs/FIDELITY.md and the paper recipes agree: every ``key=value`` of a "paper recipes use" cell is what the
recipes listed in that section set, or, in a section whose introduction names the ``preset=paper`` of
``eval pooling``, what that preset sets (catches: a recipe, the preset or the table changed without the other)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ssl_video.config import load_config
from ssl_video.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def _sections() -> list[tuple[str, list[str], list[str]]]:
    """(section title, paper recipe names, "paper recipes use" cells) of each section with a table."""
    text = (ROOT / "docs" / "FIDELITY.md").read_text()
    out = []
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title = block.splitlines()[0].strip()
        intro = block.split("|", 1)[0]
        recipes = re.findall(r"`recipes/([\w.-]+)\.yaml`", intro) + (["preset=paper"] if "`preset=paper`" in intro else [])
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if not rows:
            continue
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        column = header.index("paper recipes use")
        cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))][column] for row in rows[2:]]
        out.append((title, recipes, cells))
    return out


def _value(recipe, key: str):
    value = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, tuple) else value


SETTINGS = [(title, name, key, want)
            for title, recipes, cells in _sections()
            for cell in cells
            for key, want, only in re.findall(r"`([\w.]+)=([^`@]+)(?:@([\w.-]+))?`", cell)
            for name in ([only] if only else recipes)]


def test_the_table_names_paper_recipes_and_settings():
    titles = {title: recipes for title, recipes, _ in _sections()}
    assert {"STiCA", "TSP", "Learnable pooling"} <= set(titles)
    assert all(titles[t] for t in ("STiCA", "TSP", "Learnable pooling", "Attention Clusters"))
    assert len(SETTINGS) >= 10


@pytest.mark.parametrize("title, name, key, want", SETTINGS, ids=[f"{n}:{k}" for _, n, k, _ in SETTINGS])
def test_paper_recipes_use_what_the_table_says(title, name, key, want):
    if name == "preset=paper":
        from ssl_video.evaluation.protocols import get_protocol, load_settings

        recipe = load_settings(get_protocol("pooling"), {"preset": "paper"})
    else:
        recipe = load_config(Recipe, ROOT / "recipes" / f"{name}.yaml")
    assert _value(recipe, key) == yaml.safe_load(want), f"{name}: {key} (docs/FIDELITY.md, {title})"
