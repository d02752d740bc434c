"""Fill the generated blocks of README.md and experiments/README.md from files the code wrote (never typed by hand).

    python scripts/update_readme.py

Blocks are delimited by `<!-- NAME:start -->` / `<!-- NAME:end -->`:
- `demo`: results/demo.md (the demo's row, rendered by scripts/render_row.py);
- `checkpoint`: every committed backbone's metadata and per-epoch log;
- `llm_checkpoint`: every committed language model's meta.json and training log;
- any other NAME with a results/NAME.md (`scorer_study`, `baselines_fashion_mnist`, the CPU stand-ins of the paper
  tables, ...): that file without its title line (image links pointed into results/);
- `verdict_findings`: the "Findings" section of results/verdicts.md;
- `tables_index` (experiments/README.md): the index of paper tables (sglp.experiment.tables.tables_index);
- hand-written blocks (`faults_summary`) are left alone.
A block with no source is an error.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import torch

from sglp.experiment.tables import tables_index

ROOT = Path(__file__).resolve().parents[1]


def checkpoint_block() -> str:
    """A summary row per committed backbone, then each one's per-epoch log."""
    dirs = sorted(p.parent for p in (ROOT / "checkpoints").glob("*/model.pt"))
    summary = ["| checkpoint | test acc. (%) | epochs | wall time (min) | made by |", "|---|---|---|---|---|"]
    logs = []
    for d in dirs:
        meta = torch.load(d / "model.pt", map_location="cpu", weights_only=True)["meta"]
        rel = d.relative_to(ROOT)
        summary.append(
            f"| `{rel}/model.pt` | **{meta['test_acc']:.2f}** | {meta['epochs']} | "
            f"{meta['wall_seconds'] / 60:.0f} | `{meta['command']}` (seed {meta['seed']}) |"
        )
        with open(d / "train_log.csv") as f:
            epochs = list(csv.DictReader(f))
        logs += [
            f"`{rel}` per epoch:",
            "",
            "| epoch | train loss | train acc. (%) | calibration acc. (%) | seconds | img/s |",
            "|---|---|---|---|---|---|",
        ]
        logs += [
            f"| {e['epoch']} | {float(e['train_loss']):.3f} | {float(e['train_acc']):.2f} | "
            f"{float(e['calib_acc']):.2f} | {float(e['seconds']):.0f} | {float(e['img_per_s']):.0f} |"
            for e in epochs
        ]
        logs.append("")
    return "\n".join(summary + [""] + logs).strip()


def llm_checkpoint_block() -> str:
    """A summary row per committed language model (meta.json beside its safetensors), then its evaluation log."""
    dirs = sorted(p.parent for p in (ROOT / "checkpoints").glob("*/meta.json"))
    if not dirs:
        return "(no language model committed yet)"
    out = [
        "| checkpoint | parameters | test perplexity | unigram test ppl. | steps | tokens | minutes | made by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    logs = []
    for d in dirs:
        m = json.loads((d / "meta.json").read_text())
        rel = d.relative_to(ROOT)
        out.append(
            f"| `{rel}/` | {m['parameters'] / 1e6:.2f} M | **{m['test_perplexity']:.1f}** | "
            f"{m['unigram_test_perplexity']:.1f} | {m['steps']} | {m['tokens_seen'] / 1e6:.1f} M | "
            f"{m['train_seconds'] / 60:.0f} | `{m['command']}` (seed {m['seed']}) |"
        )
        with open(d / "train_log.csv") as f:
            rows = list(csv.DictReader(f))
        logs += [f"`{rel}` during training:", "", "| step | train perplexity | calibration perplexity | minutes |",
                 "|---|---|---|---|"]  # fmt: skip
        logs += [
            f"| {r['step']} | {float(r['train_ppl']):.1f} | {float(r['calib_ppl']):.1f} | "
            f"{float(r['seconds']) / 60:.1f} |"
            for r in rows
        ]
        logs.append("")
    return "\n".join(out + [""] + logs).strip()


def images_into_results(text: str) -> str:
    """Relative image links of a results page, pointed into results/ (where the images live) for the README."""
    return re.sub(r"\]\((?!https?:|results/)([^)]+\.png)\)", r"](results/\1)", text)


def result_body(name: str) -> str:
    """results/NAME.md without a leading '# title' line."""
    text = images_into_results((ROOT / "results" / f"{name}.md").read_text().strip())
    title = re.match(r"\A# ([^\n]*)", text)
    text = re.sub(r"\A# [^\n]*\n+", "", text)
    text = re.sub(r"^## ", "#### ", text, flags=re.M)  # the file's sections sit below the README's headings
    if title and name.endswith("_cpu"):  # the paper tables' stand-ins: their title says which table
        text = f"**{title.group(1)}**\n\n{text}"
    return text


# Blocks a person writes (from the files named beside them), which this script leaves alone.
HAND_WRITTEN = ("faults_summary",)
# Blocks filled with one section of a results page: block -> (page, heading of the section).
SECTIONS = {"verdict_findings": ("verdicts", "## Findings")}
BLOCK = re.compile(r"(<!-- (\w+):start -->\n).*?(<!-- \2:end -->)", re.S)


def result_section(name: str, heading: str) -> str:
    """One `## ` section of results/NAME.md, its heading dropped (images pointed into results/)."""
    text = (ROOT / "results" / f"{name}.md").read_text()
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not match:
        raise SystemExit(f"results/{name}.md has no '{heading}' section: run `make verdicts-page`")
    return images_into_results(match.group(1)).strip()


def block_body(name: str) -> str | None:
    """What block NAME holds, from the files the code wrote; None for a hand-written block."""
    builders = {"checkpoint": checkpoint_block, "llm_checkpoint": llm_checkpoint_block,
                "tables_index": lambda: tables_index(ROOT / "experiments", ROOT / "results")}  # fmt: skip
    if name in HAND_WRITTEN:
        return None
    if name in builders:
        return builders[name]()
    if name in SECTIONS:
        return result_section(*SECTIONS[name])
    if (ROOT / "results" / f"{name}.md").exists():
        return result_body(name)
    raise SystemExit(f"README.md block '{name}' has no source: add results/{name}.md or list it in HAND_WRITTEN")


def fill(text: str) -> str:
    """The README text with every generated block refilled."""

    def refill(m: re.Match) -> str:
        body = block_body(m.group(2))
        return m.group(0) if body is None else m.group(1) + body + "\n" + m.group(3)

    return BLOCK.sub(refill, text)


PAGES = ("README.md", "experiments/README.md")  # the pages with generated blocks


def main() -> None:
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = fill(text)
        path.write_text(new)
        names = [m.group(2) for m in BLOCK.finditer(text)]
        print(f"{page}:", "updated" if new != text else "unchanged", "— blocks", ", ".join(names))


if __name__ == "__main__":
    main()
