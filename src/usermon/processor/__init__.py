"""The usermon processor: OTLP in, per-user aggregation and attack detection, findings out.

Imported only when used; its dependencies come with the ``usermon[processor]`` extra.
"""
