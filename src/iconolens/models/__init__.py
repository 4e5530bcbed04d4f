"""iconolens.models"""
