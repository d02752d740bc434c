"""Built-in prunable-unit adapters for models that cannot carry the methods themselves.
Importing this package registers them (sglp.core.units does so on first need)."""

from sglp.kinds.classification.adapters import torchvision_models  # noqa: F401
