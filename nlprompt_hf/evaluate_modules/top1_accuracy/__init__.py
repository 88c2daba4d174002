"""The `top1_accuracy` metric: load it with `evaluate.load(<this directory>)`."""
