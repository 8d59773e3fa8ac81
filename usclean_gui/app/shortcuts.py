"""Every keyboard shortcut of the app in one table, shown by Help ▸ Keyboard shortcuts (F1).

The cine keys are installed by :class:`~.cine.CineController`, the view keys by the View menu's
actions; this table is what the dialog and docs/USER_GUIDE.md list (a test checks they agree).
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

#: (keys, what they do) in the order the dialog shows them
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Space", "Play / pause the cine loop"),
    ("Left / Right", "Previous / next frame"),
    ("Home / End", "First / last frame"),
    ("F", "Fit the image to the panes"),
    ("1", "1:1: one image pixel per screen pixel"),
    ("Ctrl+0, double-click", "Reset the view (fit)"),
    ("Wheel / drag", "Zoom / pan (all panes together)"),
    ("Ctrl+3 / Ctrl+2 / Ctrl+1", "Three panes / two panes / one pane (compare)"),
    ("L", "Next layout"),
    ("T", "One pane: whole pane original ⇄ despeckled"),
    ("Ctrl+B", "Show / hide the side panel (larger panes)"),
    ("Esc", "Stop drawing an ROI"),
    ("Ctrl+O", "Open a clip"),
    ("Ctrl+Q", "Quit"),
    ("F1", "This list"),
)


class ShortcutsDialog(QDialog):
    """A non-modal table of :data:`SHORTCUTS`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(SHORTCUTS), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, (keys, what) in enumerate(SHORTCUTS):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        note = QLabel("Mouse: right-click a pane for its menu; ROIs are drawn from the ROI box.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(note)
        lay.addWidget(buttons)
        rows = self.table.verticalHeader().defaultSectionSize() * len(SHORTCUTS)
        self.table.setMinimumHeight(rows + self.table.horizontalHeader().sizeHint().height() + 6)
        self.resize(540, min(rows + 130, 700))
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
