"""Built-in prunable-unit adapters for models that cannot carry the methods themselves.
Importing this package registers them (sglp.units does so on first need)."""

from sglp.adapters import torchvision_models  # noqa: F401
