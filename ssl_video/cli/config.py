"""``ssl-video config show|defaults``: print a recipe resolved with its overrides, or the defaults."""

from __future__ import annotations

from ssl_video.cli import add_command, add_group

SHOW_EXAMPLE = """example:
  ssl-video config show recipes/stica_tiny_synthetic.yaml data.clip.frames=8 data.batch_size=4
Only the active method's section is shown (as a run records it). An unknown key, a wrong type or a missing path is a one-line error naming the key (exit code 2)."""


def register(subparsers) -> None:
    group = add_group(subparsers, "config", "inspect recipes and their overrides")
    show = add_command(group, "show", "validate a recipe, apply key=value overrides, print the result", run_show,
                       SHOW_EXAMPLE)
    show.add_argument("recipe", help="recipe YAML file")
    show.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides")
    add_command(group, "defaults", "print every recipe key with its default value (every method's section)", run_defaults,
                "example:\n  ssl-video config defaults > my_recipe.yaml")


def run_show(args) -> int:
    from ssl_video.config import dump_yaml
    from ssl_video.recipe import load_recipe, recipe_dict

    print(dump_yaml(recipe_dict(load_recipe(args.recipe, args.overrides))), end="")
    return 0


def run_defaults(args) -> int:
    from ssl_video.config import dump_yaml, to_dict
    from ssl_video.recipe import Recipe

    print(dump_yaml(to_dict(Recipe())), end="")
    return 0
