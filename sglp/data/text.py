"""A local text corpus as language-modelling splits: token ids cut into fixed-length sequences.

The corpus is split by position, not at random (neighbouring sequences share context): the first
`1 - calib_fraction - test_fraction` of the tokens train, the next `calib_fraction` are the held-out
calibration split (CKA, in-segment perplexity), the last `test_fraction` the test split. Sequences have no
padding, so every token is scored and every row of a CKA Gram is a real token. Batches are (ids, ids):
the labels are the inputs, shifted inside the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from sglp.core.errors import DataNotFoundError, InvalidArgument
from sglp.data.radio import TensorBatches

KJV_HINT = (
    "The offline default corpus is the King James Bible from Debian: `apt-get install bible-kjv` (it pulls "
    "bible-kjv-text), then `bible gen1:1-rev22:21 > {path}` (or `make data-llm`)."
)


def read_corpus(path: str | Path) -> str:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"text corpus {path} not found. " + KJV_HINT.format(path=path))
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataNotFoundError(f"text corpus {path} is empty")
    return text


class TextSplits:
    """Train / calibration / test sequences of `seq_len` tokens (same batch interface as the vision splits)."""

    def __init__(
        self, ids: torch.Tensor, seq_len: int, calib_fraction: float = 0.05, test_fraction: float = 0.05,
        name: str = "text",
    ) -> None:  # fmt: skip
        if not (0 < calib_fraction < 1 and 0 < test_fraction < 1 and calib_fraction + test_fraction < 1):
            raise InvalidArgument(
                f"calib_fraction={calib_fraction} and test_fraction={test_fraction} must be in (0, 1)"
            )
        n = len(ids)
        a = int(n * (1 - calib_fraction - test_fraction))
        b = int(n * (1 - test_fraction))
        self._set(name, seq_len, ids[:a], ids[a:b], ids[b:])

    @classmethod
    def from_train_test(
        cls, train_ids: torch.Tensor, test_ids: torch.Tensor, seq_len: int, calib_fraction: float = 0.05,
        name: str = "text",
    ) -> TextSplits:  # fmt: skip
        """Splits of a corpus published with its own train and test parts: calibration is the last `calib_fraction`
        of the training tokens (never the test part)."""
        if not 0 < calib_fraction < 1:
            raise InvalidArgument(f"calib_fraction={calib_fraction} must be in (0, 1)")
        a = int(len(train_ids) * (1 - calib_fraction))
        splits = cls.__new__(cls)
        splits._set(name, seq_len, train_ids[:a], train_ids[a:], test_ids)
        return splits

    def _set(self, name: str, seq_len: int, train: torch.Tensor, calib: torch.Tensor, test: torch.Tensor) -> None:
        self.name, self.seq_len = name, seq_len
        self.train_x, self.calib_x, self.test_x = (self.chunks(t, seq_len) for t in (train, calib, test))
        if not (len(self.train_x) and len(self.calib_x) and len(self.test_x)):
            n = len(train) + len(calib) + len(test)
            raise InvalidArgument(f"{name}: {n} tokens are too few for sequences of {seq_len} in three splits")
        self.input_shape = (seq_len,)

    @staticmethod
    def chunks(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
        """(N, seq_len) non-overlapping sequences; the incomplete tail is dropped."""
        n = len(ids) // seq_len
        return ids[: n * seq_len].reshape(n, seq_len).long()

    def train_batches(self, batch_size: int, seed: int = 0, epoch: int = 0, max_batches: int | None = None):
        return TensorBatches(self.train_x, self.train_x, batch_size, True, seed, epoch, max_batches, drop_last=True)

    def calib_batches(self, batch_size: int, max_batches: int | None = None, seed: int = 0):
        return TensorBatches(self.calib_x, self.calib_x, batch_size, True, seed, 0, max_batches, drop_last=True)

    def test_batches(self, batch_size: int = 16, max_batches: int | None = None):
        return TensorBatches(self.test_x, self.test_x, batch_size, max_batches=max_batches)


def text_splits(
    path: str | Path, encode: Callable[[str], list[int]], seq_len: int = 128, calib_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> TextSplits:  # fmt: skip
    """Read the corpus at `path`, tokenise it with `encode` (e.g. a Hugging Face tokenizer's `encode`), split it."""
    ids = torch.tensor(encode(read_corpus(path)), dtype=torch.long)
    return TextSplits(ids, seq_len, calib_fraction, test_fraction, name=Path(path).stem)
