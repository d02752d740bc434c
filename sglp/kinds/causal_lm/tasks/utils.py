"""Dataset loader of the local lm-eval tasks in this folder."""

import json


def continuation_dataset(path: str, **_kwargs):
    """{"test": Dataset} from a JSONL file of {"context", "choices", "label"} items."""
    import datasets

    with open(path) as f:
        items = [json.loads(line) for line in f if line.strip()]
    return {"test": datasets.Dataset.from_list(items)}
