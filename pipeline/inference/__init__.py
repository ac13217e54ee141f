"""Running trained models: model cards, model directories, vocoders, loading and synthesis.

card (what a model is) | model_dir (model.pt + card.json) | vocoder (HiFi-GAN or Griffin-Lim) |
load (any family's model from its card) | synthesis (every split into data/synth/<system>/) |
speak (`v2s speak`).
"""
