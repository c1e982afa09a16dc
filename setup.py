"""Build hook for the optional C extension; every other piece of metadata is in pyproject.toml.

``usermon.processor._otlpwalk`` reads the usermon parts of OTLP export requests off the wire,
several times faster than walking the parsed message in Python (docs/performance.md, "Processor
ingest"). It is optional: without a C compiler or Python's headers the build skips it with a
warning and the processor uses the pure-Python walk, with the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "usermon.processor._otlpwalk",
            sources=["src/usermon/processor/_otlpwalk.c"],
            optional=True,
        )
    ]
)
