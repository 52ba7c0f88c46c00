"""What the two CoST import formats share: the depth of a ResNet state dict and CoST block patterns."""

from __future__ import annotations

import re

from ssl_video.errors import UserError

DEPTH_ARCH = {2: "cost_r18", 6: "cost_r50", 23: "cost_r101"}  # blocks in layer3 -> architecture
_BLOCK = re.compile(r"(?:^|\.)layer([1-4])\.(\d+)\.")


def blocks(keys, marker: str = "") -> set[tuple[int, int]]:
    """``(stage, block)`` of every residual block named in ``keys`` (those containing ``marker``)."""
    found = set()
    for key in keys:
        match = _BLOCK.search(key)
        if match and marker in key:
            found.add((int(match.group(1)), int(match.group(2))))
    return found


def cost_arch(keys, arch: str | None, what: str) -> str:
    """The CoST encoder for a ResNet state dict: ``arch`` if given, else from the depth of ``layer3``."""
    if arch is not None:
        if arch not in DEPTH_ARCH.values():
            raise UserError(f"--arch must be one of {', '.join(DEPTH_ARCH.values())} (got {arch!r})")
        return arch
    depth = len({b for s, b in blocks(keys) if s == 3})
    if depth not in DEPTH_ARCH:
        raise UserError(f"{what}: cannot tell the ResNet depth ({depth} blocks in layer3): give --arch")
    return DEPTH_ARCH[depth]


def pattern_of(arch: str, cost_blocks: set[tuple[int, int]]) -> tuple[tuple[int, ...], ...]:
    """The zoo's block pattern for ``arch`` with a 1 at every ``(stage, block)`` in ``cost_blocks``."""
    from ssl_video.models.cost import COST_BLOCKS

    return tuple(tuple(int((stage + 1, b) in cost_blocks) for b in range(len(row)))
                 for stage, row in enumerate(COST_BLOCKS[arch]))
