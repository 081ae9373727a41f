"""Django system checks (filled in by the foundation work)."""
