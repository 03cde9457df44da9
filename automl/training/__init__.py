"""Training one network: the loop, augmentation, the learning-rate schedule and device placement.
It knows graphs and tensors, not the search."""
