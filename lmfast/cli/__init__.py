"""The `lmfast` command line: thin Typer adapters over the library's capability functions."""
