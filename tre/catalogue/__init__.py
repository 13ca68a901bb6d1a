"""The node's dataset catalogue (DCAT-AP JSON-LD) and federated count queries.

``answer_count_query`` (tre.catalogue.counts) is what the federation agent calls.
"""
