"""Neural network parts of A2A/V2A (Kefalas et al.) and the vocoder.

config (sizes, presets) | norm (multi-statistics batch norm, freezing) | video_encoder,
audio_encoders, identity, temporal, conformer, decoders (the parts) | synth, a2a, v2a (the
assembled models) | discriminator, hifigan, losses (adversarial training and the vocoder).
"""
