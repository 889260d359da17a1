"""HTTP only: the native /v1 API, the legacy /v1/hosted_inference API, auth and error mapping."""
