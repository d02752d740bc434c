"""Every paper row with cost columns beside the nearest operating point our configured depth reaches.

python scripts/operating_points.py [--out results/operating_points.md]

For each row of experiments/*/paper.csv that reports FLOPs or parameter reductions and names a method we run: the
experiment's architecture (built on the meta device, no weights) at the row's `units_kept`, the reachable ranges,
the nearest point and its distance, and every depth within tolerance. Costs only: nothing is trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sglp.experiment.operating_points import DEFAULT_TOLERANCE_PP, CostModel, build_on_meta
from sglp.experiment.tables import as_number, cost_rows

ROOT = Path(__file__).resolve().parents[1]


def cost_model(experiment: str, cache: dict) -> CostModel:
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", "paths.root=/tmp/sglp-ops"])
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    net.pop("weights", None)
    key = (str(net), tuple(cfg.dataset.input_shape))
    if key not in cache:
        cache[key] = CostModel.of(build_on_meta(lambda: instantiate(net)), cfg.dataset.input_shape)
    return cache[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/operating_points.md")
    args = ap.parse_args()
    cache: dict = {}
    lines = [
        "# Operating points: the papers' cost columns against our configured depths",
        "",
        "Made by `python scripts/operating_points.py` (architectures built on the meta device, small ones counted on"
        " a zero-filled CPU copy; no training, timing-free).",
        f"Tolerance {DEFAULT_TOLERANCE_PP} pp. `quoted` rows are reachable at no depth: their method runs at SGLP's.",
        "",
        "| table | experiment | paper row | paper FLOPs ↓ / params ↓ | kept | kind | nearest point (MACs ↓ / params ↓)"
        " | distance (pp) | depths within tolerance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p.parent for p in (ROOT / "experiments").glob("*/table.yaml")):
        for row in cost_rows(folder):
            if not row.get("method"):
                continue
            cost = cost_model(row["experiment"], cache)
            macs, params = as_number(row.get("flops")), as_number(row.get("params"))
            kept = int(row["units_kept"])
            nearest, dist = cost.reachable(cost.num_units - kept).closest(macs, params)
            depths = cost.depths_matching(macs, params)
            lines.append(
                f"| {folder.name} | {row['experiment']} | {row['paper_method']} | {row.get('flops') or '–'} / "
                f"{row.get('params') or '–'} | {kept} of {cost.num_units} | {row['operating_point']} | "
                f"{nearest.macs_pct:.2f} / {nearest.params_pct:.2f} | {dist:.2f} | {depths or 'none'} |"
            )
            print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
