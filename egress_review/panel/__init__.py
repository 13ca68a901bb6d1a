"""The DAC web panel: server-rendered review of egress requests (router in `routes`)."""

from egress_review.panel.routes import router

__all__ = ["router"]
