"""Request handlers."""

ROUTES = ("/health", "/orders")
