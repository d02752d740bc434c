"""Training-free candidate scorers.

Contract: `scorer.prepare(calibration, model)` once before a search (calibration(batch_size,
num_batches) yields held-out batches; `model` is the full backbone), then
`scorer(model, removed, segment=..., kept=...)` -> float per candidate, where `model` is the
candidate network itself (the shared backbone with the `removed` units bypassed) and `segment` /
`kept` name the segment being searched and the units it keeps. `scorer.maximize` says which way
is better.
"""
