"""Model families. Each module builds networks that expose `prunable_units()`."""
