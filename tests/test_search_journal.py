"""A killed search resumes from its journal: the reference is the same search run uninterrupted without one (same
choices and scores), and each candidate is scored exactly once across the killed run and its resumption."""

import functools
import json

import pytest
import torch
from filelock import FileLock

from sglp.core.checkpoint import save_checkpoint
from sglp.core.segmentation import UniformSegmenter
from sglp.data.fashion_mnist import load_fashion_mnist
from sglp.experiment.pipeline import JobSettings, run_pruning
from sglp.kinds.base import NoFinetuning
from sglp.kinds.classification.models.resnet_cifar import resnet20
from sglp.kinds.classification.task import ClassificationTask
from sglp.methods.scorers.base import Scorer
from sglp.methods.scorers.loss import LossScorer
from sglp.methods.search import SegmentSearch
from sglp.methods.search_journal import SearchJournal
from sglp.methods.strategy import SegmentedPruning

SEGMENTS = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
WEIGHTS = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.6, 0.5, 0.8]


class Killed(Exception):
    """Stands in for the process being killed mid-search."""


class CountingScorer(Scorer):
    """A candidate's score is minus the summed weight of its removed units; dies after `kill_after` calls."""

    maximize = True

    def __init__(self, kill_after: int | None = None):
        self.calls, self.kill_after = [], kill_after

    def prepare(self, calibration, model=None):
        pass

    def __call__(self, model, removed, segment=None, kept=None):
        if self.kill_after is not None and len(self.calls) == self.kill_after:
            raise Killed
        self.calls.append(tuple(removed))
        return -sum(WEIGHTS[u] for u in removed)


def search(journal=None, scorer=None, order="independent"):
    return SegmentSearch(keep=5, mode="paper", cap_at_allotted=True, order=order)(
        resnet20(num_classes=10, in_channels=1), SEGMENTS, scorer or CountingScorer(), progress=False, journal=journal
    )


def journal(tmp_path, weights="w1") -> SearchJournal:
    return SearchJournal(tmp_path / "job.jsonl", {"config_key": "abc", "weights": weights})


def same(a, b) -> bool:
    return a.kept == b.kept and a.scores == b.scores and [c.kept for c in a.choices] == [c.kept for c in b.choices]


@pytest.mark.parametrize("order", ["independent", "sequential"])
def test_a_killed_search_resumes_to_the_uninterrupted_result_scoring_each_candidate_once(tmp_path, order):
    reference = search(order=order)
    total = len(reference.scores)
    with pytest.raises(Killed):
        search(journal(tmp_path), CountingScorer(kill_after=4), order=order)
    assert len((tmp_path / "job.jsonl").read_text().splitlines()) == 1 + 4  # header + the 4 scored before the kill
    scorer = CountingScorer()
    resumed = search(journal(tmp_path), scorer, order=order)
    assert len(scorer.calls) == total - 4 and same(resumed, reference)
    assert resumed.resumed == 4 and reference.resumed == 0
    again = CountingScorer()
    assert same(search(journal(tmp_path), again, order=order), reference) and again.calls == []


def test_a_line_torn_by_the_kill_is_ignored(tmp_path):
    reference = search()
    with pytest.raises(Killed):
        search(journal(tmp_path), CountingScorer(kill_after=3))
    with open(tmp_path / "job.jsonl", "a") as f:
        f.write('{"segment": 1, "removed": [0, 1')  # the kill came while this line was written
    scorer = CountingScorer()
    assert same(search(journal(tmp_path), scorer), reference) and len(scorer.calls) == len(reference.scores) - 3
    again = CountingScorer()  # the records written after the torn line are whole: nothing is scored a third time
    assert same(search(journal(tmp_path), again), reference) and again.calls == []


def test_a_journal_of_other_weights_is_started_over(tmp_path):
    search(journal(tmp_path, weights="w1"))
    scorer = CountingScorer()
    result = search(journal(tmp_path, weights="w2"), scorer)
    assert len(scorer.calls) == len(result.scores)  # nothing reused
    header = json.loads((tmp_path / "job.jsonl").read_text().splitlines()[0])["fingerprint"]
    assert header["weights"] == "w2" and header["segments"] == SEGMENTS


def test_a_journal_in_use_by_a_running_twin_is_left_alone(tmp_path):
    search(journal(tmp_path))
    before = (tmp_path / "job.jsonl").read_text()
    with FileLock(f"{tmp_path / 'job.jsonl'}.lock"):
        scorer = CountingScorer()
        result = search(journal(tmp_path), scorer)
    assert len(scorer.calls) == len(result.scores) and (tmp_path / "job.jsonl").read_text() == before


def test_a_prune_job_rerun_reads_its_search_from_the_journal(tmp_path, monkeypatch):
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, resnet20(num_classes=10, in_channels=1))
    data = functools.partial(load_fashion_mnist, path="data", calib_size=500)

    def prune(run: str) -> dict:
        t = ClassificationTask(resnet20(num_classes=10, in_channels=1), str(checkpoint), data, NoFinetuning(),
                               progress=False, eval_max_batches=1, eval_batch_size=100, latency_batch_sizes=[1],
                               latency_min_run_time=0.01)  # fmt: skip
        strategy = SegmentedPruning(None, UniformSegmenter(k=3), SegmentSearch(keep=5), LossScorer(1, 16))
        s = JobSettings(calib_batch_size=16, calib_batches=1, progress=False, save_pruned_model=False,
                        search_journal=str(tmp_path / "journal" / "key.jsonl"))  # fmt: skip
        return run_pruning(t.load_model(), t, strategy, s, tmp_path / run, None, identity={"config_key": "key"})

    first = prune("first")
    entries = (tmp_path / "journal" / "key.jsonl").read_text().splitlines()[1:]
    assert len(entries) == first["search_evaluated"] > 1
    monkeypatch.setattr(LossScorer, "__call__", lambda *a, **k: pytest.fail("scored again"))
    second = prune("second")
    assert second["removed"] == first["removed"]
    assert (first["search_resumed"], second["search_resumed"]) == (0, first["search_evaluated"])
