"""The Voka Bridge desktop app (PySide6). Depends on server/; server/ never imports this package."""
