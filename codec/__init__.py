"""avfr.codec: data pipeline, AVFR-GAN networks, keypoint math, ONNX export and runtime."""
