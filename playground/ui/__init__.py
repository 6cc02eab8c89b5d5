"""Qt widgets: one per file, calling into the Qt-free core."""
