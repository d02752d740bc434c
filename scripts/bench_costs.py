"""Benchmark of the cost model (sglp.experiment.operating_points.CostModel.of) on this machine: counting every
single removal
on the meta device vs on a zero-filled CPU copy (`counting_twin`), same counts required.

    python scripts/bench_costs.py --out results/bench_costs.md

The pre-flight (`dry_run=true`) builds one cost model per architecture and process; the operating-point tests build
one per table architecture.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench_search import timed  # best-of-n wall time; scripts/ is on the path when run as a script

from sglp.core.provenance import provenance, where_it_ran
from sglp.experiment.operating_points import CostModel, build_on_meta
from sglp.kinds.classification.models.resnet_cifar import resnet56
from sglp.kinds.classification.models.torchvision_nets import torchvision_classifier
from sglp.kinds.classification.models.vgg_cifar import vgg16_bn

MODELS = {  # name -> (factory, input shape)
    "ResNet-56 (CIFAR, 27 blocks)": (lambda: resnet56(num_classes=10), (3, 32, 32)),
    "VGG-16-BN (CIFAR, 13 convs)": (lambda: vgg16_bn(num_classes=10), (3, 32, 32)),
    "ResNet-50 (ImageNet, 16 blocks)": (lambda: torchvision_classifier("resnet50"), (3, 224, 224)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    start = provenance("start")
    lines = [
        "# Cost-model benchmark",
        "",
        f"Made by `python scripts/bench_costs.py --out {args.out}`. Best of {args.repeats}. `CostModel.of` counts "
        "the dense model, each single removal and 4 additivity checks; the CPU copy column forces the copy (the "
        "default uses it only up to `CPU_TWIN_MAX_MACS` a forward).",
        "",
        "| model | on meta (s) | on a CPU copy (s) | speed-up | counts equal |",
        "|---|---|---|---|---|",
    ]
    for name, (factory, shape) in MODELS.items():
        model = build_on_meta(factory)
        t_meta, on_meta = timed(lambda m=model, s=shape: CostModel.of(m, s, cpu_copy_max_params=0), args.repeats)
        t_twin, on_twin = timed(lambda m=model, s=shape: CostModel.of(m, s, cpu_copy_max_macs=math.inf), args.repeats)
        same = (on_meta.dense_macs, on_meta.unit_savings, on_meta.additive) == (
            on_twin.dense_macs, on_twin.unit_savings, on_twin.additive)  # fmt: skip
        lines.append(f"| {name} | {t_meta:.2f} | {t_twin:.2f} | {t_meta / t_twin:.1f}x | {same} |")
        print(lines[-1], flush=True)
    text = "\n".join([*lines, "", where_it_ran(start, provenance("end"))]) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
