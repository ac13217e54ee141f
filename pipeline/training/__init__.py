"""One trainer for every model, its datasets and training tasks."""
