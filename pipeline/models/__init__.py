"""Neural network parts: encoders, temporal modules, decoders, discriminators, losses."""
