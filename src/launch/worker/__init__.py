"""Worker processes: load one bundle once, then serve predictions over HTTP. Never imports the server."""
