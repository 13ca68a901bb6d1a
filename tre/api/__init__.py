"""The FastAPI application: one router per resource, RFC 9457 errors, deny by default."""
