"""Widgets shared by the screens; each keeps its look in DEFAULT_CSS."""
