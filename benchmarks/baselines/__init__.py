"""Baselines that loopsvc is measured against."""
