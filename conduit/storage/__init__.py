"""The storage layer: one Database per process (database.py), the delivery queue behind one
interface with one implementation per dialect (interfaces.py, queue_*.py, sql/), the models and
their migrations."""
