"""Bundled resources (demo database SQL, default tool catalog, icons), read with importlib.resources."""
