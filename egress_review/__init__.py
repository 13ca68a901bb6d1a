"""The egress airlock: nothing leaves the environment except through here.

A researcher asks for chosen outputs of a succeeded job; the files are frozen into a
content-addressed staging area, checked automatically under the datasets' policies, voted on
blind by the data access committee, and only then released, each release carrying a
machine-readable disclosure record. See docs/egress.md.
"""
