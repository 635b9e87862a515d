"""nowrongturns: the geometry of neural-network optimization paths (RSI, EB, gamma against w*)."""

__version__ = "0.1.0"
