"""Peer servers (BentoML, Ray Serve, LitServe) serving launch_bench.models; each runs in its own venv."""
