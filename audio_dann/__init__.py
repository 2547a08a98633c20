"""audio-dann: adapt audio classifiers to new recording conditions without new labels."""
__version__ = "0.1.0"
