"""``python -m usclean_gui.app`` runs the desktop app (same as ``usclean-gui``)."""
import sys

from usclean_gui.app import main

sys.exit(main())
