"""Per-utterance features aligned with the mouth crops: units, speaker embeddings, prosody."""
