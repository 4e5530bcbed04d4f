"""iconolens.detect"""
