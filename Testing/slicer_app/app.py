"""Start the module's panel outside Slicer: real Qt (PySide6, offscreen), Slicer's real Python layer of one
release (``../shared/slicer-python/<release>``: ScriptedLoadableModule, parameterNodeWrapper, i18n), real MRML
(slicer-core), and stand-ins for the rest of the application (``slicer.app``, the module manager, dialogs).

What this proves and what it does not: see ``../shared/slicer-python/README.md`` and the README's Slicer section.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULE_DIR = ROOT / "MISSUSegmentation"
SLICER_PYTHON = Path(os.environ.get("MISSU_SLICER_PYTHON", ROOT.parent / "shared" / "slicer-python"))


class ModuleManager:
    """``slicer.app.moduleManager()``: only the unload signal the Widget base class listens to."""

    def __init__(self) -> None:
        self._slots: list = []

    def connect(self, signal: str, slot) -> None:
        assert signal == "moduleAboutToBeUnloaded(QString)", signal
        self._slots.append(slot)

    def disconnect(self, signal: str, slot) -> None:
        self._slots.remove(slot)

    def unload(self, name: str) -> None:
        for slot in list(self._slots):
            slot(name)


class Dialogs:
    """The user at the message boxes: records every message, answers confirmations from ``answers``."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.questions: list[str] = []
        self.answers: list[bool] = []

    def error(self, text, *args, **kwargs) -> None:
        self.errors.append(text)

    def warning(self, text, *args, **kwargs) -> None:
        self.warnings.append(text)

    def confirm(self, text, *args, **kwargs) -> bool:
        self.questions.append(text)
        return self.answers.pop(0) if self.answers else True


class SlicerApp:
    """``slicer.app``: what the module and Slicer's Python layer call on it."""

    def __init__(self, qapp) -> None:
        self.qapp = qapp
        self._modules = ModuleManager()

    def moduleManager(self) -> ModuleManager:
        return self._modules

    def testingEnabled(self) -> bool:
        return False  # as for a user: errors are shown

    def translate(self, context: str, text: str) -> str:
        return text

    def setOverrideCursor(self, cursor) -> None:
        self.qapp.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        self.qapp.restoreOverrideCursor()

    def processEvents(self) -> None:
        self.qapp.processEvents()

    def restart(self) -> None:
        raise AssertionError("the module asked Slicer to restart")


class Harness:
    def __init__(self, release: str) -> None:
        self.release = release
        layer = SLICER_PYTHON / release
        if not (layer / "slicer").is_dir():
            raise RuntimeError(f"Slicer's Python layer not found: {layer}")
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        sys.path[:0] = [str(HERE), str(layer), str(MODULE_DIR)]  # HERE/slicer before Slicer's layer
        import qt

        qt.QCoreApplication.setOrganizationName("MISSU-tests")  # QSettings of its own, never a user's
        self.qapp = qt.QApplication.instance() or qt.QApplication(["Slicer"])
        import ctk  # noqa: F401
        import slicer
        import slicer.util

        # The meta-package copies every public name of its submodules onto ``slicer``; parameterNodeWrapper's
        # own ``util`` submodule then hides ``slicer.util``, which Slicer's real package never does.
        slicer.util = sys.modules["slicer.util"]
        self.slicer, self.qt = slicer, qt
        self.scene = slicer.vtkMRMLScene()
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(self.scene)
        segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
        segmentations.SetMRMLScene(self.scene)
        segmentations.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic("Segmentations", segmentations)
        self._keep = (app_logic, segmentations)
        slicer.mrmlScene = self.scene
        slicer.app = SlicerApp(self.qapp)
        slicer.modules = types.SimpleNamespace(
            missusegmentation=types.SimpleNamespace(path=str(MODULE_DIR / "MISSUSegmentation.py")),
            segmentations=types.SimpleNamespace(logic=lambda: segmentations),
        )
        self.dialogs = Dialogs()
        slicer.util.errorDisplay = self.dialogs.error
        slicer.util.warningDisplay = self.dialogs.warning
        slicer.util.confirmYesNoDisplay = slicer.util.confirmOkCancelDisplay = self.dialogs.confirm
        self.exceptions: list[BaseException] = []
        sys.excepthook = self._record_exception  # what a Qt slot raised (Slicer logs it to its console)

    def _record_exception(self, kind, value, tb) -> None:
        self.exceptions.append(value)
        sys.__excepthook__(kind, value, tb)

    def open_panel(self):
        """Load the module as Slicer does (module class, then the panel's widget in a module panel)."""
        import MISSUSegmentation

        module = MISSUSegmentation.MISSUSegmentation(types.SimpleNamespace(path=str(MODULE_DIR / "MISSUSegmentation.py")))
        panel = self.slicer.qMRMLWidget()
        panel.setLayout(self.qt.QVBoxLayout())
        panel.setMRMLScene(self.scene)
        panel.isEntered = True
        widget = MISSUSegmentation.MISSUSegmentationWidget(panel)
        widget.setup()
        widget.enter()
        panel.resize(460, 900)
        panel.show()
        return module, widget

    def process_events(self, seconds: float = 0.0) -> None:
        end = time.monotonic() + seconds
        while True:
            self.qapp.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    def wait_until(self, condition, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            self.process_events(0.05)


def registry_of_the_shipped_model(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A ``registry.json`` (in a model folder of its own, with its own cache) whose one entry, ``la-mri-remote``,
    is the shipped la-mri bundle zipped under ``tmp_path``; returns (the zip, the model folder)."""
    import hashlib
    import json
    import zipfile

    archive, models = tmp_path / "la-mri.zip", tmp_path / "models"
    with zipfile.ZipFile(archive, "w") as z:
        for file in (MODULE_DIR / "Resources" / "Models" / "la-mri").iterdir():
            z.write(file, file.name)
    models.mkdir()
    entry = {"url": archive.as_uri(), "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
    (models / "registry.json").write_text(json.dumps({"models": {"la-mri-remote": entry}}))
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))
    return archive, models
