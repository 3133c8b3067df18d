"""Shared test configuration: offline Hugging Face, hypothesis profiles."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# tiny torch models: threads only add synchronisation (measured ~20x slower with 2 threads on
# the 2-core CI machine, where pytest-xdist already runs one worker per core)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the exact core's passes (dualgap.threads) likewise: one thread per worker by default; the
# tests of the threaded passes set their thread counts themselves
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True, print_blob=True,
)
settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(  # a long sweep before a release: HYPOTHESIS_PROFILE=fuzz make test
    "fuzz", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
