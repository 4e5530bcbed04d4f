"""iconolens.report"""
