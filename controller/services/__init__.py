"""Service functions: keyword-only, take a Session, raise controller.errors on bad requests."""
