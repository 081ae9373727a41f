"""Test settings: the demo shop's, with training run synchronously and fast password hashing."""

import os
from pathlib import Path

from demo.settings import *  # noqa: F403
from demo.settings import SHOP_RECS, VAR_DIR

SHOP_RECS = {
    **SHOP_RECS,
    "EAGER_TRAINING_IN_BACKGROUND": False,
    # Off: each model load would collect the whole test process (tests/plugin/test_model_swap.py
    # turns it on where it is tested).
    "SERVING_GC_FREEZE": False,
    # Off: a value kept fresh by its timer would be rebuilt from the database in the middle of a
    # later test (tests/plugin/test_refreshed.py turns it on where it is tested).
    "KEEP_FRESH_SECONDS": 0,
    "LOCAL_CACHE_DIR": str(Path(os.environ.get("SHOP_RECS_VAR_DIR", VAR_DIR)) / "test-cache"),
}
MEDIA_ROOT = Path(os.environ.get("SHOP_RECS_VAR_DIR", VAR_DIR)) / "test-media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests render the plugin's own templates: the demo's overrides (demo/templates/shop_recs/) are
# left out of DIRS, so the plugin's templates/ folder wins over the demo app's folder.
TEMPLATES = [{**TEMPLATES[0], "DIRS": [BASE_DIR / "templates"]}]  # noqa: F405
