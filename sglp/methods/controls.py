"""Matched controls: random choices built the same way as a method's own choice, so that a comparison differs in
one thing only.

For a method that segmented the network and kept `kept` of its units:
- `in_segments`: inside each of *its* segments, as many units as it kept there, drawn at random. Same similarity,
  segments and calibration as the method; only the in-segment score is replaced by chance.
- `same_depth`: as many units as it kept in all, drawn at random anywhere. Only the depth is shared.
A method that picks its own depth (SGLP's every-subset search) gets its controls at the depth it picked.
Unit indices are 0-based in forward order (sglp.core.units).
"""

from __future__ import annotations

import numpy as np

from sglp.core.errors import InvalidArgument

CONTROLS = ("in_segments", "same_depth")
LABELS = {"in_segments": "random in its segments", "same_depth": "random, same depth"}


def check_controls(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The control names, validated: each one of CONTROLS, none twice."""
    names = tuple(names)
    unknown = [n for n in names if n not in CONTROLS]
    if unknown or len(set(names)) != len(names):
        raise InvalidArgument(f"matched_controls={list(names)}: choose each at most once from {list(CONTROLS)}")
    return names


def kept_per_segment(segments: list[list[int]], kept: list[int]) -> list[int]:
    """How many of `kept` fall in each segment: (k,) counts summing to len(kept)."""
    keep = set(kept)
    counts = [sum(u in keep for u in seg) for seg in segments]
    if sum(counts) != len(keep):
        raise ValueError(f"kept units {sorted(keep - {u for s in segments for u in s})} lie in no segment")
    return counts


def control_kept(name: str, segments: list[list[int]], kept: list[int], seed: int) -> list[int]:
    """The kept units of control `name` for a method that kept `kept` with `segments`; sorted, seeded (the same
    seed, segments and counts give the same draw). A control never copies the method's own choice by design, but
    may coincide with it by chance (a segment kept whole or emptied has a single draw)."""
    rng = np.random.default_rng([seed, CONTROLS.index(check_controls([name])[0])])
    if name == "in_segments":
        counts = kept_per_segment(segments, kept)
        drawn = [rng.choice(seg, size=m, replace=False) for seg, m in zip(segments, counts) if m]
        return sorted(int(u) for part in drawn for u in part)
    units = sorted(u for seg in segments for u in seg)
    return sorted(int(u) for u in rng.choice(units, size=len(kept), replace=False))
