"""Training: examples from the prepared data, the frozen-encoder feature cache and one loop for
every stage (rsmoe/training/loop.py)."""
