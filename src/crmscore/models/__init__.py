"""Models: the shared estimator, task declarations, the training pipeline and the MLflow registry."""
