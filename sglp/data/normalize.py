"""Input normalisation constants shared by the image loaders (torchvision's ImageNet statistics, RGB)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
