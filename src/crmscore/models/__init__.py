"""Models: the shared estimator, task declarations, the training pipeline and the MLflow registry.

The task modules are imported here so that every task is registered (crmscore.models.tasks.get_task) as
soon as any part of the models layer is used, without crmscore.models.tasks importing the modules that
import it. A new task module is added to this list."""

from crmscore.models import churn, next_purchase, uplift  # noqa: F401  (each registers its tasks on import)
