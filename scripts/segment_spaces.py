"""Fisher segments and per-segment search-space sizes for both unit representations and several k,
on a trained backbone: the numbers behind the choice of the default segmenter.

    python scripts/segment_spaces.py --out results/segment_spaces.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sglp.core.checkpoint import load_weights
from sglp.core.segmentation import REPRESENTATIONS, fisher_segments
from sglp.core.similarity import CKA
from sglp.data.fashion_mnist import load_fashion_mnist
from sglp.experiment.report import emit_report
from sglp.kinds.classification.models.resnet_cifar import resnet56
from sglp.methods.search import SegmentSearch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/resnet56_fashion_mnist/model.pt")
    ap.add_argument("--keep", type=int, default=14)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    ap.add_argument("--estimator", default="unbiased")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    model = resnet56(10, 1)
    load_weights(model, args.checkpoint)
    data = load_fashion_mnist()
    sim = CKA(args.estimator)(model, data.calib_batches(128, 2))
    search = SegmentSearch(keep=args.keep)
    lines = [
        f"Fisher segments of ResNet-56 / Fashion-MNIST ({args.checkpoint}), linear CKA ({args.estimator}) on "
        f"2 calibration batches of 128; search space = sum_i C(n_i, m_i) for keeping {args.keep} of 27 units.",
        "Made by `python scripts/segment_spaces.py --out results/segment_spaces.md`.",
        "",
        "| representation | k | segment sizes | kept per segment | search space | segments (unit indices from 0) |",
        "|---|---|---|---|---|---|",
    ]
    for rep in REPRESENTATIONS:
        for k in args.ks:
            segs = fisher_segments(sim, k, rep)
            alloc = search.plan(segs)
            bounds = ", ".join(f"{s[0]}-{s[-1]}" for s in segs)
            space = search.search_space(segs, alloc)
            lines.append(f"| {rep} | {k} | {[len(s) for s in segs]} | {alloc} | {space:,} | {bounds} |")
    emit_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
