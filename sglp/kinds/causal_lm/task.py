"""Decoder LLMs as a pruning task: LoRA recovery, perplexity, lm-eval accuracy, parameters, tokens/s.

Metrics: perplexity on the test split; accuracy (%) on lm-eval tasks (hub tasks where available, plus the local
continuation task built from the test text); parameters; throughput in tokens/s of a forward pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer

from sglp.core import validation
from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument
from sglp.core.metrics import count_parameters, reduction_pct
from sglp.core.modes import eval_mode
from sglp.kinds.base import NoFinetuning, Task
from sglp.kinds.causal_lm.lora import LoRAConfig, lora_finetune
from sglp.kinds.causal_lm.perplexity import perplexity

log = logging.getLogger(__name__)
LOCAL_TASK = "sglp_continuation"


@torch.inference_mode()
def tokens_per_second(model: nn.Module, batch_size: int, seq_len: int, vocab_size: int, min_run_time: float) -> float:
    """Forward-pass throughput (tokens/s): median time of a batch of random token ids after warm-up."""
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), device=model_device(model))
    with eval_mode(model):
        for _ in range(2):
            model(input_ids=ids, use_cache=False)
        t = Timer("model(input_ids=ids, use_cache=False)", globals={"model": model, "ids": ids},
                  num_threads=torch.get_num_threads())  # fmt: skip
        return batch_size * seq_len / t.blocked_autorange(min_run_time=min_run_time).median


class CausalLMTask(Task):
    """A causal LM saved with `save_pretrained` at `path` (a local directory or a hub id) with its tokenizer.

    `data(encode=)` builds the text splits with the model's tokenizer; `finetune_data(encode=)` (optional) is the
    recovery set (an instruction set), else LoRA trains on the training split. `tasks` maps lm-eval task names to
    the metric reported for each.
    """

    kind = "causal_lm"
    surgery_in_place = True  # an 8B model is not copied: its cost is measured first, then its layers leave
    recipes = (LoRAConfig,)
    evaluate_hint = "evaluate a pruned LLM by loading its directory with model.path=<run dir>/pruned_model"

    def __init__(
        self,
        path: str,
        data: Callable[..., Any],
        finetune: LoRAConfig | NoFinetuning,
        dtype: str = "float32",
        device_map: str | Mapping | None = None,
        device: torch.device | str = "cpu",
        finetune_data: Callable[..., Any] | None = None,
        tasks: Mapping[str, str] | None = None,
        task_limit: int | None = None,
        local_items: int = 200,
        eval_batch_size: int = 8,
        eval_max_batches: int | None = None,
        latency_batch_sizes: Sequence[int] = (1, 8),
        latency_min_run_time: float = 1.0,
        build: Callable[..., nn.Module] | None = None,
        layers_path: str | None = None,
        vocab_size: int | None = None,
        corpus: str | None = None,
        corpus_held_out: float = 0.1,
        progress: bool = True,
    ) -> None:
        super().__init__(data, finetune, progress)
        self.layers_path = layers_path
        self.check_measurement(eval_batch_size, eval_max_batches, latency_batch_sizes, latency_min_run_time)
        validation.integer("lm_eval.task_limit", task_limit, allow_none=True)
        validation.integer("lm_eval.local_items", local_items)
        self.path, self.dtype, self.device_map, self.device = str(path), dtype, device_map, torch.device(device)
        self.finetune_data_factory = finetune_data
        self.tasks = dict(tasks or {})
        self.task_limit, self.local_items = task_limit, local_items
        self.eval_batch_size, self.eval_max_batches = eval_batch_size, eval_max_batches
        self.latency_batch_sizes, self.latency_min_run_time = list(latency_batch_sizes), latency_min_run_time
        self.build, self.vocab_size, self.corpus, self.corpus_held_out = build, vocab_size, corpus, corpus_held_out
        self.tokenizer = None
        self.items_path: Path | None = None

    @property
    def weights_dir(self) -> Path | None:
        return Path(self.path) if Path(self.path).expanduser().exists() else None

    def weights_missing(self) -> bool:
        local = self.path.startswith((".", "/", "~")) or self.path.count("/") != 1  # else a hub id
        return local and not (Path(self.path).expanduser() / "config.json").exists()

    def load_model(self) -> nn.Module:
        from sglp.kinds.causal_lm.models import load_causal_lm

        model, self.tokenizer = load_causal_lm(self.path, self.dtype, self.device_map)
        if self.layers_path:  # checked now: every later stage finds the layers through this attribute
            from sglp.kinds.causal_lm.layers import decoder_layers

            decoder_layers(model, self.layers_path)
            model.sglp_layers_path = self.layers_path
        if self.device_map is None:
            model.to(self.device)
        return model

    def build_data(self):
        if self.tokenizer is None:
            raise InvalidArgument("CausalLMTask: load_model() first (the splits are tokenised by its tokenizer)")
        return self.data_factory(encode=self.tokenizer.encode)

    def prepare(self, run_dir: Path, seed: int) -> None:
        from sglp.kinds.causal_lm.evaluation import check_tasks, write_continuation_items

        if self.tasks:
            text = self.tokenizer.decode(self.data.test_x.reshape(-1).tolist())
            self.items_path = write_continuation_items(text, Path(run_dir) / "continuation_items.jsonl",
                                                       self.local_items, seed=seed)  # fmt: skip
            check_tasks(self.tasks, {"path": str(self.items_path)})

    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        from sglp.kinds.causal_lm.evaluation import evaluate_tasks

        out = {f"ppl_{stage}": perplexity(model, self.data.test_batches(self.eval_batch_size, self.eval_max_batches))}
        if self.tasks:
            scores = evaluate_tasks(model, self.tokenizer, self.tasks, {"path": str(self.items_path)},
                                    self.eval_batch_size, self.task_limit)  # fmt: skip
            out.update({f"{t}_{stage}": v for t, v in scores.items()})
            out[f"avg_acc_{stage}"] = sum(scores.values()) / len(scores)
        log.info("%s: %s", stage, {k: round(v, 3) for k, v in out.items()})
        return out

    def finetune(self, model: nn.Module, seed: int, logger, steps: int | None = None) -> tuple[nn.Module, dict]:
        ft = self.finetune_config
        if steps is not None and isinstance(ft, LoRAConfig):
            ft = dataclasses.replace(ft, steps=steps)
        if not isinstance(ft, LoRAConfig):
            return model, {"lora_steps": 0, "lora_final_loss": None}
        data = self.finetune_data_factory(encode=self.tokenizer.encode) if self.finetune_data_factory else self.data
        model, losses = lora_finetune(model, data, ft, seed=seed, progress=self.progress)
        return model, {"lora_steps": ft.steps, "lora_final_loss": losses[-1] if losses else None}

    def measure_cost(self, model: nn.Module) -> dict[str, Any]:
        vocab = model.config.get_text_config(decoder=True).vocab_size
        out: dict[str, Any] = {"params": count_parameters(model)}
        for b in self.latency_batch_sizes:
            out[f"tokens_per_s_bs{b}"] = tokens_per_second(
                model, b, self.data.seq_len, vocab, self.latency_min_run_time
            )
        return out

    def compare_cost(self, dense: dict[str, Any], pruned: dict[str, Any]) -> dict[str, Any]:
        pd, pp = dense["params"], pruned["params"]
        row: dict[str, Any] = {"params_dense": pd, "params_pruned": pp, "params_reduction_pct": reduction_pct(pd, pp)}
        for b in self.latency_batch_sizes:
            d, p = dense[f"tokens_per_s_bs{b}"], pruned[f"tokens_per_s_bs{b}"]
            row.update({f"tokens_per_s_dense_bs{b}": d, f"tokens_per_s_pruned_bs{b}": p, f"speedup_bs{b}": p / d})
        return row

    def save(self, model: nn.Module, run_dir: Path, **meta: Any) -> Path:
        out = Path(run_dir) / "pruned_model"
        model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        (out / "pruning.json").write_text(json.dumps(meta, indent=1) + "\n")
        return out

    def pretrain(
        self, recipe, seed: int, resume: bool, overwrite: bool, logger, config_yaml: str, command: str
    ) -> dict[str, Any]:
        """A byte-level BPE tokenizer fitted on the training part of `corpus`, then the model from `build`."""
        from sglp.data.text import read_corpus
        from sglp.kinds.causal_lm.pretrain import pretrain_causal_lm
        from sglp.kinds.causal_lm.tokenizer import train_tokenizer

        if self.build is None or self.corpus is None or self.vocab_size is None:
            raise InvalidArgument(
                f"pretraining {self.path} needs model.build, model.vocab_size and a local text corpus "
                "(dataset.splits.path): hub models are downloaded, not pretrained here"
            )
        text = read_corpus(self.corpus)
        self.tokenizer = train_tokenizer(text[: int(len(text) * (1 - self.corpus_held_out))], self.vocab_size)
        t = self.tokenizer
        model = self.build(vocab_size=len(t), pad_token_id=t.pad_token_id, bos_token_id=t.bos_token_id,
                           eos_token_id=t.eos_token_id).to(self.device)  # fmt: skip
        meta = pretrain_causal_lm(model, t, self.data, recipe, self.path, seed=seed, resume=resume,
                                  overwrite=overwrite, command=command, progress=self.progress)  # fmt: skip
        (Path(self.path) / "config_run.yaml").write_text(config_yaml)
        print(f"{self.path}: test perplexity {meta['test_perplexity']:.2f} "
              f"(unigram {meta['unigram_test_perplexity']:.1f}), {meta['parameters']:,} parameters")  # fmt: skip
        return meta
