"""Channel (filter) pruning on Torch-Pruning's dependency graph: SGLP's Table 8 and its baselines.

- `groups`: the prunable channel groups of a network (a conv whose output channels couple with nothing but its own
  BatchNorm and the next layer's inputs), the exact cost of any widths, the ratio policy that reaches a FLOPs /
  parameter target, and the removal plan that rebuilds a saved pruned model.
- `criteria`: one contract (`ChannelCriterion.select`) for every way of choosing the channels a group keeps:
  Torch-Pruning's importances (L1, FPGM, Taylor, random), HRank, CHIP, channel GradNorm, and SGLP on channels
  (channel CKA -> seriation -> Fisher segments -> a score inside each segment).
- `strategy`: `ChannelPruning`, the `sglp.methods.strategy.Strategy` the pipeline runs.

Imported only when a channel method is configured (torch-pruning is optional: `pip install sglp[channels]`).
"""
