"""The pruning methods: strategies (segment-then-search, layer fusion, channel pruning), the segment search and its
journal, the candidate scorers, the per-unit criteria and the matched controls."""
