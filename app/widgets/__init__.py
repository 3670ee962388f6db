"""Widgets shared by the screens: charts, strips, tables."""
