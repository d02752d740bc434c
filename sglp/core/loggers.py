"""The logger contract every stage takes (`NullLogger`: each call a no-op, `logger=none`); Weights & Biases is
`sglp.experiment.report.WandbLogger`, the same calls."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class NullLogger:
    """Logs nothing (logger=none)."""

    def start(self, name: str, config: Mapping[str, Any], run_dir: str | Path, tags: list[str] | None = None) -> None:
        pass

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_image(self, key: str, path: str | Path) -> None:
        pass

    def log_artifact(self, path: str | Path, name: str) -> None:
        pass

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        pass
