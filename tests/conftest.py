"""Shared test setup: offline, deterministic, small thread count."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The browser tests' fixtures (one served studio and one Chromium per test module; see browser_page).
from browser_page import browser, page, server, url  # noqa: E402, F401
