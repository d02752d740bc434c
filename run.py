"""sglp's one entry point: `python run.py [group=option ...] [key=value ...]` (Hydra).

Hydra composes the config; sglp.experiment.cli turns it into library calls (no algorithm lives here);
sglp.experiment.command_line checks the command line before Hydra runs and ends bad input with exit 2.
`python run.py --help` lists the config groups; `python run.py --cfg job` prints the config.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_SILENT", "true")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sglp.experiment.command_line import check_command_line, run_or_exit  # noqa: E402
from sglp.experiment.resolvers import register as register_resolvers  # noqa: E402

register_resolvers()  # ${slug:...}, ${pick:...} in configs/
CONFIGS = Path(__file__).resolve().parent / "configs"


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_or_exit(cfg)


if __name__ == "__main__":
    if problem := check_command_line(sys.argv[1:], CONFIGS):
        print(f"sglp: error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
