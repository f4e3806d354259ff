"""Slicer's compiled ``SlicerBaseLogicPython`` (imported by ``slicer/logic.py``): its classes come with slicer-core."""

from slicer_core import vtkSlicerApplicationLogic  # noqa: F401
