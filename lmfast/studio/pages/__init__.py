"""Studio pages: one module per page, each a thin adapter over its capability's function."""
