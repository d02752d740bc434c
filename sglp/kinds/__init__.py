"""The model kinds (configs/kind/): `base.Task`, the contract between the pruning job and a kind of model, and one
package per kind: `classification` (image and signal classifiers) and `causal_lm` (decoder LLMs), each with its
task, recovery, models and unit adapters."""
