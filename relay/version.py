"""The relay's version (``relay.__version__``), in a module of its own so that any part of
the package can name it without importing the whole package."""

__version__ = "0.1.0"
