"""graddoctor: find, explain and fix vanishing and exploding gradients."""

__version__ = "0.1.0"
