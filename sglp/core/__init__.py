"""The core: prunable units and their removal, activations, CKA, Fisher segmentation, costs, statistics, checkpoints,
devices, errors and validation. Imports nothing above it (tests/test_import_graph.py)."""
