"""Per-unit importance criteria: the layer-ranking baselines (LayerPrune, Chen et al., ShortGPT, SR-init,
magnitude, random).

Contract: a criterion is a scorer (see sglp.methods.scorers) whose `prepare(calibration, model)` computes
`importance`, one value per prunable unit of the full network (higher = more important). A candidate's
score is the summed importance of the units it keeps, so inside any segment the best candidate keeps the
segment's most important units, and `sglp.methods.search.SegmentSearch` takes them directly instead of
enumerating. With `segmenter=none` (one segment) that is the one-shot "remove the lowest-ranked units"
policy of LayerPrune and ShortGPT; with `segmenter=fisher` it is SGLP's segments ranked by that criterion.
"""
