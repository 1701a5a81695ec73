"""avfr.codec: the model and everything around it, in four rooms.

``nets`` (the paper's blocks, keypoint math, model assembly) and ``data`` (clips, mel windows, priors, cache,
datasets, bundles) import no other room; ``train`` (loop, pair sampling, losses, validation) and ``runtime``
(export, onnxruntime sessions, weights, what both call peers use) import those two, never each other.
``avfr.codec`` imports only ``avfr.proto`` outside itself.
"""
