"""Training-free candidate scorers: `scorer(model, removed)` -> float; `scorer.maximize` says which way is better.

`model` is the candidate network itself (the shared backbone with the removed units bypassed),
`removed` the tuple of removed unit indices. Scorers that read data get their calibration
batches once through `prepare(batches)`.
"""
