"""Scripts the airlock runs inside a sandbox (never imported by the API process)."""
