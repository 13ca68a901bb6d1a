"""A node's side of the federation: its admin's decisions and the agent that talks to the hub."""
