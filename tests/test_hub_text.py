"""The standard LLM corpora read from local copies in the hub's own file formats (parquet, Alpaca JSON)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sglp.core.errors import DataNotFoundError
from sglp.data.hub_text import format_instruction, instruction_splits, wikitext_splits


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def write_wikitext(root, train_lines, test_lines):
    for part, lines in (("train", train_lines), ("validation", test_lines[:1]), ("test", test_lines)):
        folder = root / "wikitext-2-raw-v1" / part
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"text": lines}), folder / "0000.parquet")


def test_wikitext_from_parquet_calibrates_on_the_tail_of_train_and_tests_on_the_test_part(tmp_path):
    train = [" = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 : Unrecorded Chronicles \n"] * 40
    test = [" = Robert Boulter = \n", " Robert Boulter is an English film and television actor .\n"] * 20
    write_wikitext(tmp_path, train, test)
    s = wikitext_splits(encode, seq_len=16, calib_fraction=0.1, path=tmp_path)
    train_ids, test_ids = torch.tensor(encode("".join(train))), torch.tensor(encode("".join(test)))
    cut = int(len(train_ids) * 0.9)
    assert torch.equal(s.train_x.reshape(-1), train_ids[: len(s.train_x) * 16])
    assert torch.equal(s.calib_x.reshape(-1), train_ids[cut : cut + len(s.calib_x) * 16])
    assert torch.equal(s.test_x.reshape(-1), test_ids[: len(s.test_x) * 16])
    assert len(s.test_x) == len(test_ids) // 16 and s.input_shape == (16,)


def test_missing_corpus_stops_with_the_download_command(tmp_path):
    with pytest.raises(DataNotFoundError, match="huggingface-cli download Salesforce/wikitext"):
        wikitext_splits(encode, path=tmp_path / "none")  # HF_HUB_OFFLINE=1 in the tests: no hub either
    with pytest.raises(DataNotFoundError, match="huggingface-cli download yahma/alpaca-cleaned"):
        instruction_splits(encode, path=tmp_path / "none")


def test_alpaca_json_becomes_packed_instruction_text(tmp_path):
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well. 2. Sleep."},
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    ] * 30
    (tmp_path / "alpaca_data_cleaned.json").write_text(json.dumps(records))
    s = instruction_splits(encode, seq_len=32, calib_fraction=0.1, test_fraction=0.1, path=tmp_path)
    text = "\n\n".join(format_instruction(r) for r in records)
    assert format_instruction(records[1]) == (
        "### Instruction:\nTranslate to French.\n\n### Input:\nGood morning\n\n### Response:\nBonjour"
    )
    assert "### Input" not in format_instruction(records[0])
    assert torch.equal(s.train_x.reshape(-1), torch.tensor(encode(text))[: len(s.train_x) * 32])
