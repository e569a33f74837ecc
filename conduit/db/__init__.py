"""Database layer: declarative base, engines per dialect, sessions and the transaction boundary."""
