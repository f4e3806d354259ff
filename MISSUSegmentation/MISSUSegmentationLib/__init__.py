"""Slicer glue without Qt: MRML nodes <-> the ``missu`` core, subprocess runners, review loop, dependencies.

Everything here works on the real MRML of the ``slicer-core`` wheel as well as in the Slicer app.
"""
