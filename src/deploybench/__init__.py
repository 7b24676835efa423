"""deploybench: on which execution platform, with how many cores, pinned or not, on CPU or
GPU, does a deep-learning application give the lowest end-to-end inference time?"""

__version__ = "0.1.0"
