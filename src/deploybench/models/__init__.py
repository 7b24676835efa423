"""Model definitions written in the project (nothing can be downloaded: weights are random
with a fixed seed; compute cost does not depend on the weight values)."""
