"""tensorscope.demos: one module per scenario of the syllabus (lessons and classic bugs).

Scenarios double as test fixtures: tests import them and check what they measure.
"""
