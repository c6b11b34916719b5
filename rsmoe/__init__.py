"""RS-MoE: mixture-of-experts vision-language model for remote sensing, as an MLOps pipeline."""
__version__ = "0.1.0"
