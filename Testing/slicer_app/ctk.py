"""Stand-ins for the CTK widgets the module's ``.ui`` and Slicer's GUI connectors name, with the properties and
signals Slicer's Python uses. Classes the connectors only compare against are distinct empty classes."""

from __future__ import annotations

import fnmatch
import re

import qt
from PySide6.QtCore import Property, Signal
from __feature__ import true_property  # noqa: F401  (as qt.py: PySide switches features per module)


class ctkCollapsibleButton(qt.QGroupBox):
    def _text(self) -> str:
        return self.title

    def _set_text(self, value: str) -> None:
        self.title = value

    text = Property(str, _text, _set_text)
    collapsed = Property(bool, lambda self: not self.isChecked() if self.checkable else False,
                         lambda self, value: None)


class ctkPathLineEdit(qt.QWidget):
    currentPathChanged = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.lineEdit = qt.QLineEdit(self)
        layout.addWidget(self.lineEdit)
        layout.addWidget(qt.QToolButton(self, text="..."))
        self.lineEdit.textChanged.connect(self._text_changed)
        self._filters = 0
        self._name_filters: list[str] = []

    def _text_changed(self, text: str) -> None:
        """As CTK: currentPathChanged only for acceptable input (not empty; matching a name filter if any)."""
        patterns = [p for f in self._name_filters for p in (re.findall(r"\(([^)]*)\)", f) or [f])[0].split()]
        if text and (not patterns or any(fnmatch.fnmatch(text, p) for p in patterns)):
            self.currentPathChanged.emit(text)

    def _path(self) -> str:
        return self.lineEdit.text

    def _set_path(self, value: str) -> None:
        self.lineEdit.text = value

    currentPath = Property(str, _path, _set_path)
    filters = Property(int, lambda self: self._filters, lambda self, value: setattr(self, "_filters", value))
    nameFilters = Property(list, lambda self: self._name_filters,
                           lambda self, value: setattr(self, "_name_filters", list(value)))


_NAMES = ("ctkCheckBox", "ctkCheckablePushButton", "ctkColorPickerButton", "ctkComboBox", "ctkDirectoryButton",
          "ctkDoubleRangeSlider", "ctkDoubleSlider", "ctkDoubleSpinBox", "ctkRangeWidget", "ctkSliderWidget")
globals().update({name: type(name, (qt.QWidget,), {}) for name in _NAMES})

qt.CUSTOM_WIDGETS.extend([ctkCollapsibleButton, ctkPathLineEdit])
