"""iconolens.data"""
