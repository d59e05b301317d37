"""When jobs run, and where (DESIGN §4, "Concurrency and scale-out").

APScheduler decides *when* a job is due (:mod:`partnersync.scheduling.daemon`, the only module
that imports it); an executor decides *where* it runs: in this process (the embedded default) or
on ``partnersync worker`` processes through procrastinate on PostgreSQL
(:mod:`partnersync.scheduling.workers`). We do not write a job queue of our own.
"""
