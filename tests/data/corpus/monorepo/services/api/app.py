"""The api entry point."""

PORT = 8080
