"""The in-platform side of deploybench: ``python -m deploybench.worker --job JOB.json``.

This package is the only code that runs inside a platform. It imports only ``apps``,
``models``, ``datasets`` and ``worker`` (never the host-side modules), reads one job file
and writes one JSON result.
"""
