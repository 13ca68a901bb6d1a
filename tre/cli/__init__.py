"""The `tre` command line (Typer + rich)."""
