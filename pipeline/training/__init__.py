"""Training every model with one loop.

config (TrainConfig: `train:` + a stage's overrides; LoopConfig) | task (the Task interface a
model implements: train step, validation, export) | loop (the Trainer and its data feeds) |
distributed (torchrun relaunch, process group, seeding) | live (DVCLive logging) | checkpoint
(exact resume) | windows (aligned random windows, resumable order) | adversarial (the one LS-GAN
step) | vocoder (HiFi-GAN) | runs (the training stages' work for any family) | synthetic (a
tiny corpus for tests and benchmarks).
"""
