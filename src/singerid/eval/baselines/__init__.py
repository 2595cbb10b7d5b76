"""Reference systems that singer embeddings are compared against."""
