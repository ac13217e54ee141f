"""Audio I/O and spectral features shared by every stage and model."""
