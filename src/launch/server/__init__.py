"""The Launch server: HTTP gateway (``api``), domain services (``domain``) and control loops (``control``)."""
