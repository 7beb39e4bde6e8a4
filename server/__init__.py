"""Voka Bridge server: the headless core (no Qt here, ever; the desktop app in app/ sits on top)."""

__version__ = "0.1.0"
APP_NAME = "VokaBridge"
KEYRING_SERVICE = "voka-bridge"
