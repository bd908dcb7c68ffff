"""The REST API: the Compute API's network endpoints (v2, v2.1) and the native /v1 API.

Imported only by `novanet api` and `novanet serve` (FastAPI is not light to import).
"""
