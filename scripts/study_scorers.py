"""Does the in-segment score pick good layers? Measured on the default model.

    python scripts/study_scorers.py --out results/scorer_study.md

For each seed: sample candidates of the real search space (CKA -> Fisher segments -> allotment for
`--keep` units; one kept combination per segment, drawn uniformly), score every candidate with every
scorer, fine-tune every candidate with one fixed budget, and measure test accuracy before and after.
Report per scorer the Spearman correlation of its ranking with accuracy after fine-tuning, and the
accuracy of the candidate it would pick (mean +- std over seeds). Per-candidate rows go to a CSV.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from pathlib import Path

import torch

from sglp.checkpoint import load_weights
from sglp.criteria.random import RandomUnits
from sglp.data.fashion_mnist import load_fashion_mnist
from sglp.metrics import spearman
from sglp.models.resnet_cifar import resnet56
from sglp.report import emit_report
from sglp.scorers.gradnorm import GradNormScorer
from sglp.scorers.loss import LossScorer
from sglp.search import SegmentSearch
from sglp.segmentation import FisherSegmenter
from sglp.similarity import CKA
from sglp.surgery import remove_layers
from sglp.training import SGDConfig, evaluate, train
from sglp.units import units_bypassed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/resnet56_fashion_mnist/model.pt")
    ap.add_argument("--keep", type=int, default=14)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--score-batches", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/scorer_study.md"))
    args = ap.parse_args()

    data = load_fashion_mnist()
    model = resnet56(10, 1)
    load_weights(model, args.checkpoint)
    model = model.to(memory_format=torch.channels_last)
    sim = CKA("unbiased")(model, data.calib_batches(128, 2))
    segments = FisherSegmenter(k=args.k, representation="row")(sim).segments
    alloc = SegmentSearch(keep=args.keep).plan(segments)
    finetune = SGDConfig(epochs=1, batch_size=128, lr=0.01, nesterov=True, max_steps_per_epoch=args.finetune_steps)
    scorer_names = ["gradnorm_max", "gradnorm_min", "gradnorm_paper_init_max", "loss_min", "random"]
    rows: list[dict] = []
    t_start = time.perf_counter()
    for seed in args.seeds:
        rng = random.Random(seed)
        calib = lambda bs, n: list(data.calib_batches(bs, n, seed=seed + 1))  # noqa: E731
        scorers = {
            "gradnorm": GradNormScorer(args.score_batches, 64),
            "loss": LossScorer(args.score_batches, 64),
            "paper_init": GradNormScorer(args.score_batches, 64, init="paper", init_seed=seed),
            "random": RandomUnits(seed),
        }
        for s in scorers.values():
            s.prepare(calib, model)
        seen: set[tuple[int, ...]] = set()
        while len(seen) < args.candidates:
            seen.add(tuple(sorted(u for seg, m in zip(segments, alloc) for u in rng.sample(seg, m))))
        for c, kept in enumerate(sorted(seen)):
            removed = tuple(u for u in range(27) if u not in kept)
            with units_bypassed(model, removed):
                gn = scorers["gradnorm"](model, removed, segment=list(range(27)), kept=list(kept))
                loss = scorers["loss"](model, removed)
            pi = scorers["paper_init"](model, removed, segment=list(range(27)), kept=list(kept))
            rnd = scorers["random"](model, removed)
            pruned = remove_layers(model, removed)
            before = evaluate(pruned, data.test_batches(500), "eval")["acc"]
            train(pruned, data, finetune, seed=seed, desc=f"seed {seed} cand {c + 1}/{args.candidates}")
            after = evaluate(pruned, data.test_batches(500), "eval")["acc"]
            rows.append(
                {
                    "seed": seed,
                    "kept": list(kept),
                    "gradnorm": gn,
                    "gradnorm_paper_init": pi,
                    "loss": loss,
                    "random": rnd,
                    "acc_before_ft": before,
                    "acc_after_ft": after,
                }
            )
            print(rows[-1], flush=True)
    hours = (time.perf_counter() - t_start) / 3600

    # per scorer: a value where larger = preferred
    preference = {
        "gradnorm_max": lambda r: r["gradnorm"],
        "gradnorm_min": lambda r: -r["gradnorm"],
        "gradnorm_paper_init_max": lambda r: r["gradnorm_paper_init"],
        "loss_min": lambda r: -r["loss"],
        "random": lambda r: r["random"],
    }
    table = [
        "| scorer | Spearman with acc. after FT | Spearman with acc. before FT | acc. after FT of its pick (%) | "
        "acc. before FT of its pick (%) |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for name in scorer_names:
        rho_a, rho_b, pick_a, pick_b = [], [], [], []
        for seed in args.seeds:
            rs = [r for r in rows if r["seed"] == seed]
            pref = [preference[name](r) for r in rs]
            rho_a.append(spearman(pref, [r["acc_after_ft"] for r in rs]))
            rho_b.append(spearman(pref, [r["acc_before_ft"] for r in rs]))
            best = max(range(len(rs)), key=lambda i: pref[i])
            pick_a.append(rs[best]["acc_after_ft"])
            pick_b.append(rs[best]["acc_before_ft"])
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        summary[name] = statistics.fmean(pick_a)
        table.append(
            f"| {name} | {statistics.fmean(rho_a):+.2f} ± {sd(rho_a):.2f} | {statistics.fmean(rho_b):+.2f} ± "
            f"{sd(rho_b):.2f} | {statistics.fmean(pick_a):.2f} ± {sd(pick_a):.2f} | "
            f"{statistics.fmean(pick_b):.2f} ± {sd(pick_b):.2f} |"
        )
    best_acc = [max(r["acc_after_ft"] for r in rows if r["seed"] == s) for s in args.seeds]
    mean_acc = [statistics.fmean(r["acc_after_ft"] for r in rows if r["seed"] == s) for s in args.seeds]
    winner = max(summary, key=summary.get)
    csv_path = args.out.with_suffix(".csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text = "\n".join(
        [
            "# Scorer study: does the in-segment score pick good layers?",
            "",
            f"Made by `python scripts/study_scorers.py --out {args.out}` ({hours:.2f} h on this machine). "
            f"ResNet-56 / Fashion-MNIST ({args.checkpoint}); CKA (unbiased) -> Fisher segments (row, k={args.k}) "
            f"{segments and [f'{s[0]}-{s[-1]}' for s in segments]} -> keep {args.keep} units, allotted {alloc}. "
            f"Per seed {args.candidates} candidates drawn uniformly from that space; each scored by every scorer "
            f"({args.score_batches} calibration batch(es) of 64) and fine-tuned with one fixed budget "
            f"({args.finetune_steps} SGD steps of 128, lr 0.01 cosine), then evaluated on the 10k test set. "
            f"Seeds {args.seeds}; mean ± std over seeds. Per-candidate numbers: `{csv_path}`.",
            "",
            *table,
            "",
            f"Reference points: best candidate per seed {statistics.fmean(best_acc):.2f} %, mean candidate "
            f"{statistics.fmean(mean_acc):.2f} % (after fine-tuning).",
            "",
            f"Highest accuracy of the picked candidate: **{winner}**.",
            "",
        ]
    )
    emit_report(text, args.out)


if __name__ == "__main__":
    main()
