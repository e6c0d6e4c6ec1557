"""Peers: the same model run by TensorFlow Lite Micro, for side-by-side memory and accuracy (extra `peers`)."""
