"""Corpora: one `download(raw_dir, params)` per corpus, returning its sources table."""
