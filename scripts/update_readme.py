"""Fill the README's generated blocks from files the code wrote (never typed by hand).

    python scripts/update_readme.py

Blocks are delimited by `<!-- NAME:start -->` / `<!-- NAME:end -->`:
- `demo`: results/demo.md (the demo's row, rendered by scripts/render_row.py);
- `checkpoint`: every committed backbone's metadata and per-epoch log;
- `llm_checkpoint`: every committed language model's meta.json and training log;
- `scorer_study`, `bench_search`, `segment_spaces`, `baselines_fashion_mnist`, `demo_llm` and the CPU
  stand-ins of the paper tables (`sglp_table6_cpu`, ...): the matching results/*.md, without their title line
  (image links pointed into results/).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import torch

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


def result_body(name: str) -> str:
    """results/NAME.md without a leading '# title' line."""
    text = (ROOT / "results" / f"{name}.md").read_text().strip()
    text = re.sub(r"\]\((?!https?:|results/)([^)]+\.png)\)", r"](results/\1)", text)  # images live in results/
    title = re.match(r"\A# ([^\n]*)", text)
    text = re.sub(r"\A# [^\n]*\n+", "", text)
    text = re.sub(r"^## ", "#### ", text, flags=re.M)  # the file's sections sit below the README's headings
    if title and name.endswith("_cpu"):  # the paper tables' stand-ins: their title says which table
        text = f"**{title.group(1)}**\n\n{text}"
    return text


def main() -> None:
    blocks = {"demo": result_body("demo"), "checkpoint": checkpoint_block(), "llm_checkpoint": llm_checkpoint_block()}
    names = ("scorer_study", "bench_search", "segment_spaces", "baselines_fashion_mnist", "demo_llm",
             "sglp_table6_cpu", "sglp_table7_cpu", "sglp_fig2a_cpu", "sglp_fig2b_cpu")  # fmt: skip
    for name in names:
        if (ROOT / "results" / f"{name}.md").exists():
            blocks[name] = result_body(name)
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    readme.write_text(text)
    print("README.md updated:", ", ".join(blocks))


if __name__ == "__main__":
    main()
