"""Request and response bodies, named as in the API reference."""
