"""The Qt classes' own methods, read before ``true_property`` is switched on (this module never switches it).

PySide6's ``true_property`` turns properties into attributes but also drops their getter and setter methods
(``setInterval``, ``isVisible``, ...); PythonQt keeps both. ``qt.py`` puts these methods back."""

from __future__ import annotations

import inspect

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

METHODS: dict[type, dict[str, object]] = {
    cls: {name: value for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}
    for module in (QtCore, QtGui, QtWidgets, QtUiTools)
    for cls in (getattr(module, name) for name in dir(module))  # dir(): PySide6 loads classes lazily
    if inspect.isclass(cls) and cls.__module__.startswith("PySide6")
}
