"""dim: distributed image management for diskless Linux clusters."""

__version__ = "0.1.0"
