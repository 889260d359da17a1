"""Stores shared by the server: one small protocol each, one module per engine, chosen by URL scheme."""
