"""Reusable widgets, one module each; screens compose them."""
