"""avfr.sender: the calling peer (capture, priors, keypoints, packets)."""
