"""One router per resource of the core API."""
