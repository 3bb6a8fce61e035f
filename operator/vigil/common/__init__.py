"""Generic pieces with no Vigil logic in them, below every other package.

In the manner of kopf's ``_cogs``: :mod:`vigil.common.times` (RFC 3339 as
Kubernetes writes it) and :mod:`vigil.common.objects` (typed read-only views
over the raw objects the API server returns). Nothing here imports another
Vigil package.
"""
