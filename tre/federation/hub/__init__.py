"""The hub: researchers submit and search here; nodes' agents fetch work and report here."""
