"""accelbench's harness: everything that is neither a device nor a model."""

__version__ = "0.1.0"
