"""Standard LLM-pruning corpora from the Hugging Face hub, or from a local copy in the hub's own file layout.

- `wikitext_splits`: WikiText-2 (raw), the calibration and perplexity corpus of most LLM layer-pruning papers
  (SLEB, ShortGPT, LLM-Streamline report WikiText-2 perplexity). Hub dataset `Salesforce/wikitext`, config
  `wikitext-2-raw-v1`: parquet files `<config>/{train,validation,test}/*.parquet` with one column `text`.
  Calibration is the tail of the training part; the test split is the published test part.
- `instruction_splits`: an instruction-tuning set formatted as Alpaca prompts, the LoRA recovery data of LLM-Pruner
  (yahma/alpaca-cleaned: one JSON list of {instruction, input, output}); packed into sequences of seq_len tokens.

Both read a local folder first (`path`), laid out as the hub repository (what `huggingface-cli download
<repo> --repo-type dataset --local-dir <dir>` writes), then the hub through `datasets` (cached; needs internet once).
Nothing is faked: with neither, DataNotFoundError says how to get the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from sglp.core.errors import DataNotFoundError
from sglp.data.text import TextSplits

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}"
ALPACA_PROMPT_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n{output}"


def _hub_hint(repo: str, include: str, path: str | Path | None) -> str:
    return (
        f"download it once with `huggingface-cli download {repo} --repo-type dataset --include '{include}' "
        f"--local-dir {path or '<dir>'}` and set path (or run with internet so `datasets` can fetch it)"
    )


def read_parquet_texts(files: list[Path], column: str) -> list[str]:
    import pyarrow.parquet as pq

    texts: list[str] = []
    for f in sorted(files):
        table = pq.read_table(f, columns=[column])
        texts.extend(str(t) for t in table.column(column).to_pylist() if t is not None)
    return texts


def _wikitext_part(repo: str, config: str, part: str, path: str | Path | None, column: str) -> list[str]:
    if path is not None:
        files = list((Path(path).expanduser() / config / part).glob("*.parquet"))
        if files:
            return read_parquet_texts(files, column)
    try:
        import datasets

        return [str(t) for t in datasets.load_dataset(repo, config, split=part)[column]]
    except Exception as e:  # offline, no cache, or not found
        where = f"no {config}/{part}/*.parquet under {path}; " if path is not None else ""
        raise DataNotFoundError(
            f"{repo} ({config}, {part}): {where}the hub is unreachable ({type(e).__name__}). Fix: "
            + _hub_hint(repo, f"{config}/*", path)
        ) from None


def wikitext_splits(
    encode: Callable[[str], list[int]], seq_len: int = 128, calib_fraction: float = 0.05,
    repo: str = "Salesforce/wikitext", config: str = "wikitext-2-raw-v1", path: str | Path | None = None,
    text_column: str = "text",
) -> TextSplits:  # fmt: skip
    """WikiText as train / calibration / test sequences: the lines of each part joined as the raw corpus is
    (perplexity on the joined test part, as in the pruning papers' WikiText-2 numbers)."""
    train = "".join(_wikitext_part(repo, config, "train", path, text_column))
    test = "".join(_wikitext_part(repo, config, "test", path, text_column))
    ids = [torch.tensor(encode(t), dtype=torch.long) for t in (train, test)]
    return TextSplits.from_train_test(*ids, seq_len=seq_len, calib_fraction=calib_fraction, name=config)


def format_instruction(record: dict) -> str:
    """One Alpaca-format example as training text."""
    template = ALPACA_PROMPT if str(record.get("input") or "").strip() else ALPACA_PROMPT_NO_INPUT
    return template.format(**{k: str(record.get(k) or "") for k in ("instruction", "input", "output")})


def instruction_splits(
    encode: Callable[[str], list[int]], seq_len: int = 256, calib_fraction: float = 0.02, test_fraction: float = 0.02,
    repo: str = "yahma/alpaca-cleaned", file: str = "alpaca_data_cleaned.json", path: str | Path | None = None,
    max_examples: int | None = None, eos: str = "\n\n",
) -> TextSplits:  # fmt: skip
    """An instruction set (JSON list of {instruction, input, output}) as packed training sequences for LoRA."""
    records = None
    if path is not None and (Path(path).expanduser() / file).is_file():
        records = json.loads((Path(path).expanduser() / file).read_text(encoding="utf-8"))
    if records is None:
        try:
            import datasets

            records = list(datasets.load_dataset(repo, split="train"))
        except Exception as e:
            raise DataNotFoundError(
                f"{repo}: no {file} under {path} and the hub is unreachable ({type(e).__name__}). Fix: "
                + _hub_hint(repo, file, path)
            ) from None
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        raise DataNotFoundError(f"{repo}: expected a JSON list of {{instruction, input, output}} records")
    text = eos.join(format_instruction(r) for r in records[:max_examples])
    ids = torch.tensor(encode(text), dtype=torch.long)
    return TextSplits(ids, seq_len, calib_fraction, test_fraction, name=repo.split("/")[-1])
