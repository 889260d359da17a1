"""Floors: the least a server on this machine can cost (F1 bare uvicorn, F2 front+worker, F3 redis queue)."""
