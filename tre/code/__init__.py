"""The researcher's own code, sent with a job as one gzip-compressed tar archive.

`archive` decides what an archive may hold (the same rules on the CLI before upload and on
the server after it), `store` keeps accepted archives content-addressed by SHA-256 and
unpacks each once into a read-only tree, `service` ties uploads to projects, jobs and the
audit log, and `fetch` is what a Kubernetes init container runs to unpack an archive by hash.
See docs/code.md.
"""
