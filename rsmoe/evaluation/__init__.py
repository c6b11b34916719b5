"""Evaluation: predictions, caption and VQA metrics, grounding against annotations."""
