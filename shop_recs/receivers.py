"""Signal receivers (filled in by the foundation work)."""
