"""rgsyn: reinforcement-guided synthetic data for privacy-sensitive identity recognition."""

__version__ = "0.1.0"
