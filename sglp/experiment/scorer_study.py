"""Does the in-segment score pick good layers? Measured on the default model (ResNet-56 / Fashion-MNIST), at
several depths and seeds (`make scorer-study`, scripts/study_scorers.py).

For each depth and seed: CKA -> Fisher segments -> allotment; `candidates` kept-unit combinations drawn uniformly
from that space (one combination per segment); every candidate scored by every scorer, fine-tuned with one fixed
budget, and measured before and after. This is a study of the scorers on many candidates, not a prune job: it
calls the pipeline's components (similarity, segmenter, allotment, scorers, surgery, training) once per candidate
instead of the job, which keeps one candidate and measures its cost. One row per candidate goes to the rows file as
soon as it is done, with where it ran, so an interrupted study resumes where it stopped. The page reports per
scorer and depth the Spearman correlation of its preference with accuracy (mean over seeds) and the accuracy of the
candidate it would pick, each with a 95 % percentile-bootstrap interval (candidates resampled within each seed),
beside the range that random additive scorers reach on the same candidates.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from sglp.core.metrics import spearman
from sglp.core.provenance import provenance
from sglp.core.stats import bootstrap_interval
from sglp.experiment.report import append_row
from sglp.experiment.tables import read_csv

# per scorer: a value where larger = preferred
PREFERENCE = {
    "gradnorm_max": lambda r: r["gradnorm"],
    "gradnorm_min": lambda r: -r["gradnorm"],
    "gradnorm_paper_init_max": lambda r: r["gradnorm_paper_init"],
    "loss_min": lambda r: -r["loss"],
    "random": lambda r: r["random"],
}
NUMERIC = ("gradnorm", "gradnorm_paper_init", "loss", "random", "acc_before_ft", "acc_after_ft", "seconds")


def draw_candidates(segments: list[list[int]], alloc: list[int], n: int, seed: int) -> list[tuple[int, ...]]:
    """`n` distinct kept-unit sets, one uniform combination of the allotted size per segment (seeded)."""
    rng, seen = random.Random(seed), set()
    space = math.prod(math.comb(len(seg), m) for seg, m in zip(segments, alloc))
    while len(seen) < min(n, space):
        seen.add(tuple(sorted(u for seg, m in zip(segments, alloc) for u in rng.sample(seg, m))))
    return sorted(seen)


@dataclass(frozen=True)
class StudySettings:
    """One study: the backbone, the depths (`keep`), Fisher's k, candidates per depth and seed, the seeds, the fixed
    fine-tuning budget (SGD steps of 128), the calibration batches each scorer reads, the rows file and the command
    the page names."""

    checkpoint: str
    keep: tuple[int, ...] = (14, 8)
    k: int = 3
    candidates: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_steps: int = 100
    score_batches: int = 1
    rows: str = "results/rows/scorer_study.csv"
    command: str = "make scorer-study"


def run(args: StudySettings) -> None:
    """Measure every candidate not yet in `args.rows` (one row each, appended as soon as it is done)."""
    from sglp.core.checkpoint import load_weights
    from sglp.core.segmentation import FisherSegmenter
    from sglp.core.similarity import CKA
    from sglp.core.surgery import remove_layers
    from sglp.core.units import units_bypassed
    from sglp.data.fashion_mnist import load_fashion_mnist
    from sglp.kinds.classification.models.resnet_cifar import resnet56
    from sglp.kinds.classification.training import SGDConfig, evaluate, train
    from sglp.methods.criteria.random import RandomUnits
    from sglp.methods.scorers.gradnorm import GradNormScorer
    from sglp.methods.scorers.loss import LossScorer
    from sglp.methods.search import SegmentSearch

    done = {r["key"] for r in read_csv(args.rows)}
    data = load_fashion_mnist()
    model = resnet56(10, 1)
    load_weights(model, args.checkpoint)
    model = model.to(memory_format=torch.channels_last)
    units = 27
    sim = CKA("unbiased")(model, data.calib_batches(128, 2))
    segments = FisherSegmenter(k=args.k, representation="row")(sim).segments
    finetune = SGDConfig(epochs=1, batch_size=128, lr=0.01, nesterov=True, max_steps_per_epoch=args.finetune_steps)
    for keep in args.keep:
        alloc = SegmentSearch(keep=keep).plan(segments)
        for seed in args.seeds:
            candidates = draw_candidates(segments, alloc, args.candidates, seed)
            todo = [(c, kept) for c, kept in enumerate(candidates) if f"keep{keep}-seed{seed}-cand{c}" not in done]
            if not todo:
                continue
            torch.manual_seed(seed)
            calib = lambda bs, n, seed=seed: list(data.calib_batches(bs, n, seed=seed + 1))  # noqa: E731
            scorers = {
                "gradnorm": GradNormScorer(args.score_batches, 64),
                "loss": LossScorer(args.score_batches, 64),
                "paper_init": GradNormScorer(args.score_batches, 64, init="paper", init_seed=seed),
                "random": RandomUnits(seed),
            }
            for s in scorers.values():
                s.prepare(calib, model)
            for c, kept in todo:
                t0, start = time.perf_counter(), provenance("start")
                removed = tuple(u for u in range(units) if u not in kept)
                with units_bypassed(model, removed):
                    gn = scorers["gradnorm"](model, removed, segment=list(range(units)), kept=list(kept))
                    loss = scorers["loss"](model, removed)
                pi = scorers["paper_init"](model, removed, segment=list(range(units)), kept=list(kept))
                rnd = scorers["random"](model, removed)
                pruned = remove_layers(model, removed)
                before = evaluate(pruned, data.test_batches(500), "eval", progress=False)["acc"]
                train(pruned, data, finetune, seed=seed, desc=f"keep {keep} seed {seed} cand {c + 1}", progress=False)
                after = evaluate(pruned, data.test_batches(500), "eval", progress=False)["acc"]
                row = {"key": f"keep{keep}-seed{seed}-cand{c}", "keep": keep, "seed": seed, "candidate": c,
                       "segments": json.dumps(segments), "alloc": json.dumps(alloc), "kept": json.dumps(list(kept)),
                       "gradnorm": gn, "gradnorm_paper_init": pi, "loss": loss, "random": rnd,
                       "acc_before_ft": before, "acc_after_ft": after, "finetune_steps": args.finetune_steps,
                       "score_batches": args.score_batches, "seconds": time.perf_counter() - t0,
                       **start, **provenance("end")}  # start holds the threads  # fmt: skip
                append_row(row, args.rows, unique=True)
                print(f"{row['key']}: before {before:.2f} after {after:.2f} ({row['seconds']:.0f}s)", flush=True)


def spearman_and_pick(rows_by_seed: dict[int, list[dict]], name: str, idx_by_seed: dict[int, np.ndarray]):
    """(mean over seeds of Spearman(preference, acc after FT), of Spearman with acc before FT, mean accuracy after
    FT of the picked candidate) over the candidates `idx_by_seed` (indices into each seed's rows)."""
    rho_a, rho_b, pick = [], [], []
    for seed, rs in rows_by_seed.items():
        chosen = [rs[i] for i in idx_by_seed[seed]]
        pref = [PREFERENCE[name](r) for r in chosen]
        rho_a.append(spearman(pref, [r["acc_after_ft"] for r in chosen]))
        rho_b.append(spearman(pref, [r["acc_before_ft"] for r in chosen]))
        pick.append(chosen[max(range(len(chosen)), key=lambda i: pref[i])]["acc_after_ft"])
    return float(np.mean(rho_a)), float(np.mean(rho_b)), float(np.mean(pick))


def random_scorer_null(rows_by_seed: dict[int, list[dict]], target: str, draws: int = 2000, seed: int = 0):
    """Mean over seeds of Spearman(score, `target`) for `draws` random additive scorers: i.i.d. uniform weights per
    unit, a candidate's score the sum over its kept units (the family the `random` scorer is one member of per seed).
    The candidate bootstrap holds each scorer fixed; this is the spread a scorer that knows nothing reaches on these
    candidates. Returns (draws,)."""
    rng = np.random.default_rng(seed)
    kept = {s: [json.loads(r["kept"]) for r in rs] for s, rs in rows_by_seed.items()}
    units = 1 + max(u for ks in kept.values() for k in ks for u in k)
    total = np.zeros(draws)
    for s, rs in rows_by_seed.items():
        mask = np.zeros((len(rs), units))
        for i, k in enumerate(kept[s]):
            mask[i, k] = 1.0
        scores = mask @ rng.uniform(size=(units, draws))  # (candidates, draws)
        acc = [r[target] for r in rs]
        total += [spearman(list(scores[:, d]), acc) for d in range(draws)]
    return total / len(rows_by_seed)


def where_the_rows_ran(rows: list[dict]) -> str:
    """One sentence from the rows' recorded provenance: the machines and threads, and how many rows predate it."""
    recorded = [r for r in rows if r.get("cpu")]
    threads = sorted({str(r.get("threads")) for r in rows if r.get("threads") not in (None, "")})
    machines = sorted({f"{r['cpu']}, {r['cpu_count']} cores, {r.get('gpu') or 'no GPU'}" for r in recorded})
    said = f"Rows ran with {'/'.join(threads) or '?'} torch threads"
    if machines:
        said += f" on {'; '.join(machines)} ({len(recorded)} rows record their machine and load"
        said += f", {len(rows) - len(recorded)} predate that)" if len(recorded) < len(rows) else ")"
    else:
        said += " (these rows predate recorded machine and load)"
    return said + "."


def render(rows: list[dict], args: StudySettings, hours: float) -> str:
    """The page: per depth, each scorer's Spearman correlations and pick with bootstrap intervals, beside the
    random-scorer range (`hours`: the rows' summed run time)."""
    by_keep: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_keep[int(r["keep"])][int(r["seed"])].append(r)
    lines = ["# Scorer study: does the in-segment score pick good layers?", "",
             f"Made by `{args.command}` from `{args.rows}` ({len(rows)} candidates, {hours:.2f} h of run time, the "
             "sum of the rows' seconds). ResNet-56 / Fashion-MNIST (the committed backbone); CKA (unbiased) -> "
             f"Fisher segments (row, k={args.k}) -> the allotted count per segment; candidates drawn uniformly from "
             f"that space, each scored by every scorer ({args.score_batches} calibration batch(es) of 64), "
             f"fine-tuned with one fixed budget ({args.finetune_steps} SGD steps of 128, lr 0.01, cosine) and "
             "measured on the 10k test set. Intervals: 95 % percentile bootstrap, candidates resampled within "
             f"each seed (2,000 resamples). {where_the_rows_ran(rows)}", ""]  # fmt: skip
    for keep in sorted(by_keep, reverse=True):
        seeds = by_keep[keep]
        n = {s: len(rs) for s, rs in seeds.items()}
        first = next(iter(seeds.values()))[0]
        lines += [f"## {keep} of 27 blocks kept: segments {first['segments']}, allotted {first['alloc']}; "
                  f"candidates per seed {n}", "",
                  "| scorer | Spearman with acc. after FT | Spearman with acc. before FT | acc. after FT of its "
                  "pick (%) | random scorers it beats (after FT) |", "|---|---|---|---|---|"]  # fmt: skip
        null = {t: random_scorer_null(seeds, t, seed=keep) for t in ("acc_after_ft", "acc_before_ft")}
        flat = [(s, i) for s, rs in seeds.items() for i in range(len(rs))]
        strata = [s for s, _ in flat]
        for name in PREFERENCE:
            full = {s: np.arange(len(rs)) for s, rs in seeds.items()}
            point = spearman_and_pick(seeds, name, full)

            def stat(which, name=name, seeds=seeds, flat=flat):
                def f(idx):  # a bootstrap draw of the flat (seed, i) list, drawn within each seed, regrouped
                    picked = defaultdict(list)
                    for j in idx:
                        s, i = flat[j]
                        picked[s].append(i)
                    if any(len(set(v)) < 3 for v in picked.values()):
                        return float("nan")
                    return spearman_and_pick(seeds, name, {s: np.array(v) for s, v in picked.items()})[which]

                return f

            cells = []
            for which in range(3):
                iv = bootstrap_interval(stat(which), len(flat), 2000, seed=keep * 100 + which, strata=strata)
                digits = "+.2f" if which < 2 else ".2f"
                cells.append(f"{point[which]:{digits}} [{iv.low:{digits}}, {iv.high:{digits}}]")
            cells.append(f"{100 * float(np.mean(null['acc_after_ft'] < point[0])):.0f} %")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        best = [max(r["acc_after_ft"] for r in rs) for rs in seeds.values()]
        mean = [statistics.fmean(r["acc_after_ft"] for r in rs) for rs in seeds.values()]
        lo_a, hi_a = np.quantile(null["acc_after_ft"], [0.025, 0.975])
        lo_b, hi_b = np.quantile(null["acc_before_ft"], [0.025, 0.975])
        lines += ["", f"Reference points: best candidate per seed {statistics.fmean(best):.2f} %, mean candidate "
                  f"{statistics.fmean(mean):.2f} % (after fine-tuning). Random scorers (2,000 draws of i.i.d. "
                  "uniform weights per unit, a candidate's score the sum over its kept units) reach a mean Spearman "
                  f"in [{lo_a:+.2f}, {hi_a:+.2f}] with acc. after FT and [{lo_b:+.2f}, {hi_b:+.2f}] before FT "
                  "(central 95 %): the bootstrap intervals above hold each scorer fixed, so a scorer is shown to "
                  "know something only outside this range (the last column: the share of these random scorers "
                  "its correlation after FT exceeds).", ""]  # fmt: skip
    return "\n".join(lines)
