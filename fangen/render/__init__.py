"""Renderers: pure functions from the model to {relative path: text}."""
