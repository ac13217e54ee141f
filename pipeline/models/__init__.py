"""Neural network parts of the A2A/V2A models (Kefalas et al.) and the vocoder.

config (shared sizes, HiFi-GAN presets) | norm (multi-statistics batch norm, freezing) |
video_encoder, audio_encoders, identity, temporal, conformer, decoders (the parts) | synth, a2a,
v2a (assembled from a family's parts, pipeline.families) | discriminator, hifigan, losses
(adversarial training and the vocoder).
"""
