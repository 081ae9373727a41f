"""The recommendation tests' shop and tiny trained model, for integration tests too."""

from tests.plugin.recs_fixtures import active_model, recs_shop, trained_artifact  # noqa: F401
