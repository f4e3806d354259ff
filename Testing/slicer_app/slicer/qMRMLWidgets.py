"""Stand-ins for the qMRML widgets (``slicer.qMRMLWidget``, ``slicer.qMRMLNodeComboBox``) on a real MRML scene
from slicer-core, with the properties, signals and slots Slicer's Python and the ``.ui`` file use.

This folder has no ``__init__.py``: slicer-core's ``slicer`` meta-package takes its modules in and publishes
their names as ``slicer.<name>``, before Slicer's ``parameterNodeWrapper`` (which needs them) is imported."""

from __future__ import annotations

import qt
from PySide6.QtCore import Property, Signal
from __feature__ import true_property  # noqa: F401  (as qt.py: PySide switches features per module)


class qMRMLWidget(qt.QWidget):
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(qt.QComboBox):
    """Lists the scene's nodes of ``nodeTypes`` (item data: node ID); selects a node by itself only as the real
    one does (see ``_refill``)."""

    currentNodeChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene, self._types, self._observers = None, [], []
        self._noneEnabled = self._addEnabled = self._removeEnabled = self._renameEnabled = False
        self.currentIndexChanged.connect(lambda _index: self.currentNodeChanged.emit(self.currentNode()))

    def _bool_property(name):  # noqa: N805
        return Property(bool, lambda self: getattr(self, name), lambda self, value: setattr(self, name, bool(value)))

    noneEnabled = _bool_property("_noneEnabled")
    addEnabled = _bool_property("_addEnabled")
    removeEnabled = _bool_property("_removeEnabled")
    renameEnabled = _bool_property("_renameEnabled")

    def _set_types(self, types) -> None:
        self._types = [str(t) for t in types]
        self._refill()

    nodeTypes = Property("QStringList", lambda self: list(self._types), _set_types)

    def setMRMLScene(self, scene) -> None:
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._observers.append(scene.AddObserver(event, lambda *_: self._refill()))
        self._refill()

    def _nodes(self) -> list:
        if self._scene is None:
            return []
        nodes = []
        for node_type in self._types:
            for i in range(self._scene.GetNumberOfNodesByClass(node_type)):
                node = self._scene.GetNthNodeByClass(i, node_type)
                if not node.GetHideFromEditors() and node not in nodes:
                    nodes.append(node)
        return nodes

    def _refill(self) -> None:
        current, was_empty = self.currentData(), self.count == 0
        self.blockSignals(True)
        self.clear()
        if self._noneEnabled:
            self.addItem("None", None)
        for node in self._nodes():
            self.addItem(node.GetName(), node.GetID())
        index = self.findData(current) if current is not None else -1
        if index < 0:
            # Qt's QComboBox makes its first row current only when rows arrive in an empty combo box; the real
            # node combo box is never empty when it has "None" or post items (create, delete, rename current)
            actions = self._addEnabled or self._removeEnabled or self._renameEnabled
            index = 0 if self.count and (self._noneEnabled or (was_empty and not actions)) else -1
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if self.currentData() != current:
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        node_id = self.currentData()
        return self._scene.GetNodeByID(node_id) if node_id and self._scene is not None else None

    def currentNodeID(self) -> str:
        return self.currentData() or ""

    def setCurrentNode(self, node) -> None:
        if node is None:
            self.setCurrentIndex(0 if self._noneEnabled else -1)
        else:
            self._refill()
            self.setCurrentIndex(self.findData(node.GetID()))



qMRMLRangeWidget, qMRMLSliderWidget, qMRMLSpinBox, qSlicerWidget = (
    type(name, (qt.QWidget,), {}) for name in ("qMRMLRangeWidget", "qMRMLSliderWidget", "qMRMLSpinBox", "qSlicerWidget"))
qt.CUSTOM_WIDGETS.extend([qMRMLWidget, qMRMLNodeComboBox])
