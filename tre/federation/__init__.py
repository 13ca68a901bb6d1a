"""Federation: one submission, several data holders, each deciding for itself.

A hub (`tre hub serve`) takes submissions and search queries from researchers; each node is a
full tre whose agent connects outward to the hub, signs every request with its own Ed25519
key, and acts only on responses signed by the hub's pinned key. See docs/federation.md.
"""
