"""``qt`` as Slicer's Python sees it (PythonQt), backed by PySide6 for tests outside Slicer.

PythonQt idioms provided: Qt properties as attributes (``label.text = ...``, PySide6's ``true_property``,
switched on here for every module that does not import PySide6 itself), ``widget.name`` for the object
name, the exact widget classes (``type(w) == qt.QComboBox``), and ``QUiLoader`` that knows the CTK and qMRML
stand-ins and makes the ``.ui`` file's signal/slot connections by name. Not provided: PythonQt's string
``connect("clicked()", slot)``, which PySide6 cannot give a built-in class; the module uses ``.clicked.connect``,
which PythonQt supports too.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

from pyside_methods import METHODS  # first: reads the methods before the switch below
from PySide6.QtCore import *  # noqa: F403
from PySide6.QtGui import *  # noqa: F403
from PySide6.QtUiTools import QUiLoader as _QUiLoader
from PySide6.QtWidgets import *  # noqa: F403
from __feature__ import true_property  # noqa: F401,E402  (PythonQt: properties are attributes)

import __feature__  # noqa: E402

# PySide switches features per module and lets modules that do not mention PySide6 inherit whichever module
# switched last. Under Slicer every module sees PythonQt's idioms, so here every module that is not PySide's
# own (those imported so far and those imported later) is switched to true_property.
TRUE_PROPERTY = __feature__.get_select_id(["true_property"])


def _true_property_for(name: str) -> None:
    if not name.startswith(("PySide6", "shiboken6", "shibokensupport", "pyside_methods")):
        __feature__.pyside_feature_dict[name] = TRUE_PROPERTY


class _TruePropertyEverywhere:
    """A meta-path hook that marks each module for true_property before it runs; it finds nothing itself."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        _true_property_for(fullname)
        return None


for _name in list(sys.modules):
    _true_property_for(_name)
_true_property_for("__main__")
sys.meta_path.insert(0, _TruePropertyEverywhere())

QObject.name = property(lambda self: self.objectName)  # noqa: F405  PythonQt's alias of objectName
for _cls, _methods in METHODS.items():  # PythonQt keeps getters and setters beside the properties
    for _name, _method in _methods.items():
        if _name not in vars(_cls):
            setattr(_cls, _name, _method)

CUSTOM_WIDGETS: list[type] = []  # filled by ctk.py and the qMRML stand-ins


class QUiLoader(_QUiLoader):
    """Qt's loader (the one Slicer uses) with the stand-in widgets registered; the ``.ui`` file's
    ``<connections>`` name Slicer's C++ signatures, so they are made here by name, and each must resolve."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        for widget_class in CUSTOM_WIDGETS:
            self.registerCustomWidget(widget_class)

    def load(self, device, parent=None):
        device.seek(0)
        xml = bytes(device.readAll()).decode()
        device.seek(0)
        widget = super().load(device, parent)
        if widget is None:
            return None
        root = ET.fromstring(xml)
        for connection in root.iter("connection"):
            names = {child.tag: child.text for child in connection}
            sender = widget if widget.objectName == names["sender"] else widget.findChild(QObject, names["sender"])  # noqa: F405
            receiver = widget if widget.objectName == names["receiver"] else widget.findChild(QObject, names["receiver"])  # noqa: F405
            if sender is None or receiver is None:
                raise RuntimeError(f"ui connection {names}: no such widget")
            getattr(sender, names["signal"].split("(")[0]).connect(getattr(receiver, names["slot"].split("(")[0]))
        return widget
