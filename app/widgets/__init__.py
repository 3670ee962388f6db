"""Widgets shared by the screens, each keeping its look in DEFAULT_CSS."""
