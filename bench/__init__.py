"""``prgate bench``: latency and throughput of prgate against same-run baselines.

One command starts its own broker (never a shared one), a processor, a gateway and the
baselines, drives them with a multi-process load generator and writes a JSON file, a markdown
table and a PNG plot. See ``bench/run.py`` for the scenarios and the README's "Performance"
section for the results and the settings they led to.
"""
