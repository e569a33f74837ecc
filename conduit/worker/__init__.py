"""The delivery worker: takes due jobs, renders, signs and POSTs them, records each attempt."""
