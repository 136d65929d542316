"""Deploy fixtures: small demo models with smoke-test records (routers: deploy_helpers.RouterProcess). The demo
SavedModel follows the exported model's contract, so the real model server serves it; no test here trains."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three demo SavedModels (different weights), each with its smoke-test record."""
    import pandas as pd

    from deploy.smoke import record_smoke_test
    from serving.testing import build_demo_model, demo_instances

    models = []
    for seed in range(3):
        model_dir = build_demo_model(tmp_path_factory.mktemp(f"demo-model-{seed}"), seed=seed)
        record_smoke_test(model_dir, pd.DataFrame(demo_instances(5, seed=seed)))
        models.append(model_dir)
    return models
