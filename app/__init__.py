"""tensorscope.app: the terminal UI (Textual) and the command line.

The only package of tensorscope that imports textual and rich. The library it draws
from is :mod:`tensorscope` (core/), which never imports this package.
"""
