"""Objective metrics, ASR and the evaluate stage."""
