"""The local lm-eval task runs through lm_eval.simple_evaluate on a tiny model; items are well formed."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("lm_eval")

from sglp.kinds.causal_lm.evaluation import evaluate_tasks, write_continuation_items  # noqa: E402
from sglp.kinds.causal_lm.tokenizer import train_tokenizer  # noqa: E402

TEXT = "\n".join(
    f"and the {w} of the lord came unto the people of the land in the {d} day of the month"
    for w in ("word", "spirit", "glory", "hand", "angel", "fear")
    for d in ("first", "second", "third", "seventh", "tenth")
)


def test_tokenizer_round_trips_any_text():
    tok = train_tokenizer(TEXT, vocab_size=300)
    for s in ("and the word of the lord", "Zebulun! ünïcode 123"):
        assert tok.decode(tok.encode(s)) == s
    assert tok.pad_token == "<pad>" and len(tok) <= 300


def test_continuation_items(tmp_path):
    path = write_continuation_items(TEXT, tmp_path / "items.jsonl", num_items=10, num_choices=4, seed=1)
    items = [json.loads(line) for line in path.read_text().splitlines()]
    lines = TEXT.splitlines()
    assert len(items) == 10
    for it in items:
        assert len(it["choices"]) == 4 and 0 <= it["label"] < 4
        assert f"{it['context']} {it['choices'][it['label']]}" in lines  # the right ending completes a real line


def test_local_task_accuracy_equals_a_direct_log_likelihood_computation(tmp_path):
    """The local task through lm_eval.simple_evaluate, against a reference: for each item the summed
    log-likelihood of each ending after its context (the ending's tokens are those of context + " " + ending
    beyond the context's own tokens, as lm-eval encodes pairs), argmax."""
    tok = train_tokenizer(TEXT, vocab_size=300)
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).eval()
    path = write_continuation_items(TEXT, tmp_path / "items.jsonl", num_items=20, seed=3)
    got = evaluate_tasks(model, tok, {"sglp_continuation": "acc"}, metadata={"path": str(path)}, batch_size=4)
    correct = 0
    for it in map(json.loads, path.read_text().splitlines()):
        ctx = tok.encode(it["context"])
        lls = []
        for choice in it["choices"]:
            whole = tok.encode(it["context"] + " " + choice)
            cont = whole[len(ctx) :]
            ids = torch.tensor([whole])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].double(), -1)
            lls.append(sum(logp[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont)))
        correct += int(max(range(len(lls)), key=lls.__getitem__) == it["label"])
    assert got["sglp_continuation"] == pytest.approx(100.0 * correct / 20)


@pytest.mark.slow  # builds lm-eval's task index (~20 s): make test-all
def test_without_a_route_to_the_hub_tasks_come_from_the_cache_only(tmp_path, monkeypatch):
    """No DNS: the hub is not asked (no retries with back-off), a local task still loads, a hub task that is not
    cached is one DataNotFoundError at once."""
    import socket

    import datasets.config
    import huggingface_hub.constants

    from sglp.core.errors import DataNotFoundError
    from sglp.kinds.causal_lm import evaluation

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # restored after the test
        monkeypatch.setenv(name, "0")
        monkeypatch.setattr(datasets.config, name, False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert not evaluation.hub_reachable()
    path = write_continuation_items(TEXT, tmp_path / "items.jsonl", num_items=4, seed=3)
    evaluation.check_tasks({"sglp_continuation": "acc"}, {"path": str(path)})  # the local task: no error
    assert datasets.config.HF_HUB_OFFLINE and huggingface_hub.constants.HF_HUB_OFFLINE
    cache = tmp_path / "datasets_cache"
    (cache / "some_dataset").mkdir(parents=True)  # a cache with something in it: lm-eval is asked, and fails
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    with pytest.raises(DataNotFoundError, match="cannot be loaded"):
        evaluation.check_tasks({"piqa": "acc"}, {"path": str(path)})
    (cache / "some_dataset").rmdir()  # an empty cache: refused before lm-eval's task index is built

    def no_index(*args):
        raise AssertionError("the task index was built")

    monkeypatch.setattr(evaluation, "task_manager", no_index)
    with pytest.raises(DataNotFoundError, match="empty datasets cache"):
        evaluation.check_tasks({"piqa": "acc", "sglp_continuation": "acc"}, {"path": str(path)})
    assert evaluation.local_task_names() == {"sglp_continuation"}


def test_offline_with_an_empty_datasets_cache_a_hub_task_is_refused_before_the_task_index(tmp_path, monkeypatch):
    """Without a route to the hub and with nothing in the datasets cache, no hub task can load: one
    DataNotFoundError before lm-eval's task index (seconds to build) is asked for; local tasks alone still pass
    through to it."""
    import datasets.config

    from sglp.core.errors import DataNotFoundError
    from sglp.kinds.causal_lm import evaluation

    monkeypatch.setattr(evaluation, "hub_reachable", lambda: False)
    monkeypatch.setattr(evaluation, "use_cached_datasets_only", lambda: None)  # leaves the process's settings alone
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "no_cache"))
    asked = []
    monkeypatch.setattr(evaluation, "task_manager", lambda metadata: asked.append(metadata))
    monkeypatch.setattr("lm_eval.tasks.get_task_dict", lambda names, task_manager=None: {})
    with pytest.raises(DataNotFoundError, match="empty datasets cache"):
        evaluation.check_tasks({"arc_easy": "acc", "sglp_continuation": "acc"})
    assert asked == []
    evaluation.check_tasks({"sglp_continuation": "acc"})  # local only: lm-eval is asked
    assert len(asked) == 1
