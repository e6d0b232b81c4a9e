"""genaccel: make generative visual models faster without making them worse."""

__version__ = "0.1.0"
