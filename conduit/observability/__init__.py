"""What operators watch: Prometheus metrics, liveness and readiness, structured logs.

Below the roles (api, smtp, worker) and the services in the layers, so each of them can record
its metrics; the modules import nothing of Prometheus until a metric is defined
(conduit/observability/multiprocess.py has to run first in `conduit serve`).
"""
