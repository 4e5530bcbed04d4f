"""iconolens.evaluate"""
