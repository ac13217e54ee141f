"""Video-to-speech research pipeline: importable library behind the DVC stages."""

__version__ = "0.1.0"
