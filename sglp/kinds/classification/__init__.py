"""Image and signal classifiers: the task (accuracy, MACs, latency), SGD recovery and pretraining, the model
families and the adapters that give torchvision and timm networks their prunable units."""
