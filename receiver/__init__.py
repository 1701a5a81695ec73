"""avfr.receiver: the answering peer (jitter buffer, concealment, generator)."""
