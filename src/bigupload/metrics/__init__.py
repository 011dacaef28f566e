"""Prometheus metrics: what is counted (:mod:`.catalog`), where a scrape reads it from
(:mod:`.collect`: every process of ``serve --workers N`` through prometheus_client's
multiprocess directory), and the ``/metrics`` route (:mod:`.endpoint`)."""
