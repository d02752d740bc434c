"""Segment-wise search: inside each segment, score keep/remove combinations without training.

Target: `keep` units overall (or a removal `ratio`). The kept units are allotted to segments
in proportion to segment size, at least one per segment (largest-remainder rounding, ties to
the earlier segment). Each segment then keeps its best-scoring candidate among:

- mode `exhaustive`: every combination of the allotted size m_i, C(n_i, m_i) candidates, so the
  target is met exactly;
- mode `paper`: every non-empty subset, 2^{n_i} - 1 candidates (the SGLP paper's search space);
  the kept count is then whatever the scorer prefers. With `cap_at_allotted`, subsets larger
  than m_i are excluded (sum_{j<=m_i} C(n_i, j) candidates), so at most the target is kept.

Budget: with `budget=N`, a segment with more than N candidates is searched on a seeded
random sample of N of them, and a warning states the fraction explored.

Explicit allocation: `per_segment=[m_1, ..., m_k]` fixes the kept count of each segment instead.

Order: `independent` scores a segment's candidates with every other segment intact;
`sequential` applies the decisions of earlier segments first.

Per-unit criteria (`sglp.methods.criteria`: a scorer with an `importance` per unit, a candidate's score being the
summed importance of its kept units): the best of the C(n_i, m_i) candidates is the segment's m_i most
important units, taken directly (ties: the earlier unit), with the same result as enumerating.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass, field

from torch import nn
from tqdm.auto import tqdm

from sglp.core.errors import InvalidArgument
from sglp.core.units import units_bypassed
from sglp.methods.search_journal import SearchJournal

log = logging.getLogger(__name__)
ORDERS = ("independent", "sequential")
MODES = ("exhaustive", "paper")


def segment_candidates(
    segment: list[int], sizes: list[int], budget: int | None = None, seed: int = 0
) -> list[tuple[int, ...]]:
    """Kept-unit subsets of the segment whose size is in `sizes`: all of them, or a seeded uniform
    sample of `budget` distinct ones (a size j drawn with weight C(n, j), then a random j-subset)."""
    n = len(segment)
    weights = [math.comb(n, j) for j in sizes]
    if budget is None or sum(weights) <= budget:
        return [c for j in sizes for c in itertools.combinations(segment, j)]
    rng = random.Random(f"{seed}:{segment}:{sizes}")
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < budget:
        j = rng.choices(sizes, weights=weights)[0]
        chosen.add(tuple(sorted(rng.sample(segment, j))))
    return sorted(chosen, key=lambda c: (len(c), c))


def target_keep(num_units: int, keep: int | None = None, ratio: float | None = None) -> int:
    """Number of units to keep, from exactly one of `keep` or `ratio` (fraction removed)."""
    if (keep is None) == (ratio is None):
        raise InvalidArgument("set exactly one of search.keep (units to keep) and search.ratio (fraction removed)")
    if ratio is not None:
        if not 0.0 <= ratio < 1.0:
            raise InvalidArgument(f"search.ratio={ratio} must be in [0, 1): the fraction of units removed")
        keep = num_units - int(round(ratio * num_units))
    if not 1 <= keep <= num_units:  # type: ignore[operator]
        raise InvalidArgument(
            f"search.keep={keep} is impossible: the model has {num_units} prunable units (keep 1..{num_units})"
        )
    return int(keep)  # type: ignore[arg-type]


def allocate_keep(sizes: list[int], keep: int) -> list[int]:
    """Kept units per segment: proportional to size, each in 1..size, summing to `keep`."""
    total = sum(sizes)
    if not len(sizes) <= keep <= total:
        raise InvalidArgument(
            f"cannot keep {keep} units in {len(sizes)} segments of sizes {sizes}: every segment keeps at least one "
            f"unit, so keep must be in {len(sizes)}..{total} (lower segmenter.k or raise search.keep)"
        )
    quota = [keep * s / total for s in sizes]
    alloc = [min(max(1, math.floor(q)), s) for q, s in zip(quota, sizes)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(quota[i] - math.floor(quota[i])), i))
    while sum(alloc) < keep:
        i = next(i for i in by_remainder if alloc[i] < sizes[i])
        alloc[i] += 1
        by_remainder.remove(i)
        by_remainder.append(i)
    while sum(alloc) > keep:
        i = next(i for i in reversed(by_remainder) if alloc[i] > 1)
        alloc[i] -= 1
        by_remainder.remove(i)
        by_remainder.insert(0, i)
    return alloc


@dataclass
class SegmentChoice:
    segment: list[int]
    keep: int
    kept: list[int]
    score: float | None  # None when the segment had a single candidate (nothing to score)
    candidates: int


@dataclass
class SearchResult:
    kept: list[int]
    removed: list[int]
    choices: list[SegmentChoice]
    search_space: int
    seconds: float
    scores: list[dict] = field(default_factory=list)  # every scored candidate: segment, removed, score
    evaluated: int = 0  # candidates considered (< search_space when a budget applies)
    resumed: int = 0  # of those, scores read from a journal (a killed run's): `seconds` covers only the rest


class SegmentSearch:
    """Per-segment search for a keep (or ratio) target; see the module docstring for the modes."""

    def __init__(
        self,
        keep: int | None = 14,
        ratio: float | None = None,
        order: str = "independent",
        budget: int | None = None,
        seed: int = 0,
        mode: str = "exhaustive",
        cap_at_allotted: bool = False,
        per_segment: list[int] | None = None,
    ) -> None:
        if order not in ORDERS:
            raise InvalidArgument(f"search.order={order!r}: choose one of {ORDERS}")
        if mode not in MODES:
            raise InvalidArgument(f"search.mode={mode!r}: choose one of {MODES}")
        if budget is not None and budget < 1:
            raise InvalidArgument(
                f"search.budget={budget} must be a positive number of candidates per segment, or null"
            )
        self.keep, self.ratio, self.order, self.budget, self.seed = keep, ratio, order, budget, seed
        self.mode, self.cap_at_allotted = mode, cap_at_allotted
        self.per_segment = list(per_segment) if per_segment is not None else None

    @property
    def picks_depth(self) -> bool:
        """Whether the kept count follows the scorer rather than the target (every subset of every size)."""
        return self.mode == "paper" and not self.cap_at_allotted

    def candidate_sizes(self, n: int, m: int) -> list[int]:
        """Allowed kept-subset sizes in a segment of n units with m allotted."""
        if self.mode == "exhaustive":
            return [m]
        return list(range(1, (m if self.cap_at_allotted else n) + 1))

    def check(self, num_units: int, num_segments: int, known_segments: int | None = None) -> None:
        """Raise InvalidArgument if the target cannot be met with `num_segments` segments (at least);
        `known_segments`: the number the segmenter will produce, when fixed (checks `per_segment` up front)."""
        if self.per_segment is not None:  # the sizes are checked against the actual segments in plan()
            counts = list(self.per_segment)
            if (known_segments is not None and len(counts) != known_segments) or sum(counts) > num_units:
                raise InvalidArgument(
                    f"search.per_segment={counts} does not fit {known_segments or 'the'} segments of {num_units} "
                    "units: give one count per segment (segmenter.k of them), each between 1 and the segment's size"
                )
            return
        keep = target_keep(num_units, self.keep, self.ratio)
        if keep < num_segments:
            raise InvalidArgument(
                f"keeping {keep} units is impossible with {num_segments} segments (each keeps at least one): "
                f"lower segmenter.k or keep more units"
            )

    def plan(self, segments: list[list[int]]) -> list[int]:
        """Units kept per segment: `per_segment` when given, else the proportional allocation of the target."""
        sizes = [len(s) for s in segments]
        if self.per_segment is not None:
            if len(self.per_segment) != len(sizes) or not all(1 <= m <= n for m, n in zip(self.per_segment, sizes)):
                raise InvalidArgument(
                    f"search.per_segment={self.per_segment} does not fit segments of sizes {sizes}: "
                    "give one count per segment, each between 1 and the segment's size"
                )
            return list(self.per_segment)
        return allocate_keep(sizes, target_keep(sum(sizes), self.keep, self.ratio))

    def search_space(self, segments: list[list[int]], alloc: list[int]) -> int:
        """Number of candidates in the full per-segment space (e.g. sum_i C(n_i, m_i) when exhaustive)."""
        return sum(math.comb(len(s), j) for s, m in zip(segments, alloc) for j in self.candidate_sizes(len(s), m))

    def __call__(
        self,
        model: nn.Module,
        segments: list[list[int]],
        scorer,
        progress: bool = True,
        journal: SearchJournal | None = None,
    ) -> SearchResult:
        """Choose the kept units of each segment with `scorer` on candidate views of `model` (no copies).
        `journal`: candidates it holds are not scored again, and every new score is written to it (resume)."""
        alloc = self.plan(segments)
        space = self.search_space(segments, alloc)
        if scorer.importance is not None:
            return self._top_units(segments, alloc, scorer.importance, space)
        candidates = [
            segment_candidates(seg, self.candidate_sizes(len(seg), m), self.budget, self.seed)
            for seg, m in zip(segments, alloc)
        ]
        evaluated = sum(map(len, candidates))
        log.info(
            "search space (%s): %d candidates; segment sizes %s, allotted %s",
            self.mode,
            space,
            [len(s) for s in segments],
            alloc,
        )
        if evaluated < space:
            log.warning(
                "search.budget=%d: evaluating %d of %d candidates (%.1f%% of the space)",
                self.budget,
                evaluated,
                space,
                100.0 * evaluated / space,
            )
        t0 = time.perf_counter()
        details = {"segments": segments, "alloc": alloc, "mode": self.mode, "order": self.order,
                   "budget": self.budget, "scorer": type(scorer).__name__, "maximize": scorer.maximize}  # fmt: skip
        done = journal.open(details) if journal is not None else {}
        try:
            choices, scores = self._search(model, segments, alloc, candidates, scorer, progress, done, journal)
        finally:
            if journal is not None:
                journal.close()
        scorer.release()
        kept = sorted(u for c in choices for u in c.kept)
        removed = sorted(u for seg in segments for u in seg if u not in kept)
        resumed = sum((c["segment"], tuple(c["removed"])) in done for c in scores)
        return SearchResult(kept, removed, choices, space, time.perf_counter() - t0, scores, evaluated, resumed)

    def _search(self, model, segments, alloc, candidates, scorer, progress, done, journal):
        """Score every segment's candidates (those in `done` read from it) -> (choices, scores)."""
        bar = tqdm(total=sum(map(len, candidates)), desc="search", unit="cand", leave=False, disable=not progress)
        choices: list[SegmentChoice] = []
        scores: list[dict] = []
        decided: list[int] = []  # units removed by earlier segments (used in sequential order)
        for s, (segment, m, combos) in enumerate(zip(segments, alloc, candidates)):
            base = decided if self.order == "sequential" else []
            best_kept, best_score = list(combos[0]), None
            for kept in combos if len(combos) > 1 else []:  # a single candidate needs no score
                removed = tuple(sorted(base + [u for u in segment if u not in kept]))
                score = done.get((s, removed))
                if score is None:
                    with units_bypassed(model, removed):
                        score = float(scorer(model, removed, segment=segment, kept=kept))
                    if journal is not None:
                        journal.record(s, removed, score)
                scores.append({"segment": s, "removed": list(removed), "score": score})
                better = best_score is None or (score > best_score if scorer.maximize else score < best_score)
                if better:
                    best_kept, best_score = list(kept), score
                bar.update(1)
                bar.set_postfix(seg=f"{s + 1}/{len(segments)}", best=f"{best_score:.4g}")
            if len(combos) == 1:
                bar.update(1)
            choices.append(SegmentChoice(segment, m, best_kept, best_score, len(combos)))
            decided += [u for u in segment if u not in best_kept]
        bar.close()
        return choices, scores

    def _top_units(self, segments: list[list[int]], alloc: list[int], importance, space: int) -> SearchResult:
        """Per-unit criterion: keep each segment's m_i most important units (the optimum of the summed score)."""
        if self.mode != "exhaustive":
            raise InvalidArgument(
                f"search.mode={self.mode!r} with a per-unit criterion: every unit adds to the summed importance, "
                "so the unconstrained space always keeps everything. Use search=exhaustive (the allotted count)."
            )
        t0 = time.perf_counter()
        choices = []
        for segment, m in zip(segments, alloc):
            top = sorted(sorted(segment, key=lambda u: (-float(importance[u]), u))[:m])
            score = float(sum(float(importance[u]) for u in top)) if m < len(segment) else None
            choices.append(SegmentChoice(list(segment), m, top, score, math.comb(len(segment), m)))
        kept = sorted(u for c in choices for u in c.kept)
        removed = sorted(u for seg in segments for u in seg if u not in kept)
        scores = [{"unit": u, "importance": float(importance[u])} for u in range(len(importance))]
        log.info("per-unit criterion: kept the %s most important units of each segment", alloc)
        return SearchResult(kept, removed, choices, space, time.perf_counter() - t0, scores, len(importance))
