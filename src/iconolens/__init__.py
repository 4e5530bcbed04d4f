"""iconolens: explainable computer vision for artworks."""

__version__ = "0.1.0"
