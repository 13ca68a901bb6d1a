"""A GA4GH Task Execution Service (TES) 1.1 front end at ``/ga4gh/tes/v1`` (docs/tes.md).

A TES task becomes a tre job through the same admission, code store, sandbox, audit and
airlock as ``tre submit``; nothing here runs anything itself.
"""
