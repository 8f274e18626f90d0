"""The package's version: raised with every change of the trajectory file format (written into
each file as ``landscape_version``) and printed by ``landscape --version``."""
__version__ = "0.2.0"
