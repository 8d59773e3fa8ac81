"""Before Qt starts on Linux/X11: are the system libraries its ``xcb`` platform plugin needs there?

Without them Qt aborts with "Could not load the Qt platform plugin "xcb" … even though it was found"
and nothing else.  :func:`missing_x11_libraries` tries each library the plugin links to (with the
dynamic loader, as Qt would) and :func:`advice` turns the missing ones into the Debian / Ubuntu
packages to install.  The list was read off ``ldd`` of PySide6 6.11's ``libqxcb.so`` and
``libQt6XcbQpa.so.6``.  Qt-free and cheap: it runs before PySide6 is imported.
"""
from __future__ import annotations

import ctypes
import os
import sys

#: shared library (soname) → Debian / Ubuntu package
X11_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}


#: the ones Qt's GUI library needs even offscreen (``--screenshot``, tests); the rest only the window needs
CORE_LIBRARIES = frozenset({"libxcb.so.1", "libxkbcommon.so.0", "libX11.so.6", "libEGL.so.1", "libGL.so.1",
                            "libfontconfig.so.1", "libfreetype.so.6", "libdbus-1.so.3", "libglib-2.0.so.0"})


def uses_x11(env: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """True when Qt will pick its xcb plugin: Linux, an X display, no other platform forced."""
    env = dict(os.environ) if env is None else env
    if (platform or sys.platform) != "linux":
        return False
    forced = env.get("QT_QPA_PLATFORM", "")
    if forced:
        return forced.split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_x11_libraries(loadable=_loadable) -> list[str]:
    """The sonames of :data:`X11_LIBRARIES` the dynamic loader cannot find."""
    return [lib for lib in X11_LIBRARIES if not loadable(lib)]


def headless_platform(env: dict[str, str] | None = None, platform: str | None = None,
                      loadable=_loadable) -> str | None:
    """The Qt platform a ``--screenshot`` run forces, or None to leave Qt's own choice.

    A picture needs no window system: ``"offscreen"`` when there is no display, and also when Qt
    would pick its xcb plugin but a library only the window needs is missing (Qt would abort).
    """
    env = dict(os.environ) if env is None else env
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY") and not env.get("QT_QPA_PLATFORM"):
        return "offscreen"
    if uses_x11(env, platform) and missing_x11_libraries(loadable):
        return "offscreen"
    return None


def advice(missing: list[str]) -> str:
    """What to tell the user when ``missing`` libraries stop the window from opening."""
    packages = sorted({X11_LIBRARIES[m] for m in missing})
    text = ("usclean-gui: the window cannot open: Qt's X11 (xcb) platform plugin needs system libraries that "
            "are not installed:\n  %s\nOn Debian / Ubuntu install them with:\n  sudo apt-get install %s"
            % (", ".join(missing), " ".join(packages)))
    if not CORE_LIBRARIES.intersection(missing):
        text += ("\n(headless use works without them: usclean-gui FILE --screenshot OUT.png, "
                 "or QT_QPA_PLATFORM=offscreen)")
    return text
