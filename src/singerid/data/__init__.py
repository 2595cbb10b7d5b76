"""Data: from folders of audio to recordings and segments.

``datasets`` finds recordings in known layouts and cuts them into segments; ``synth`` writes the
built-in synthetic corpus; ``shards`` packs recordings into tar shards for large trainings.
Nothing here loads a model.
"""
