"""The `kgen` command line: a thin Typer layer over the kgen library."""
