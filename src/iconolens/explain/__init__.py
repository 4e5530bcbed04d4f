"""iconolens.explain"""
