"""What MLflow runs to load a registered crmscore model ("models from code"): the model's code is this
file and the installed crmscore package, not a pickled object, so loading a model runs no pickled code and
survives refactors of the class. The model's data is its `bundle` artifact (TrainedModelPyfunc.load_context)."""

from mlflow.models import set_model

from crmscore.models.pyfunc import TrainedModelPyfunc  # older versions' copies import its alias CrmscorePyfunc

set_model(TrainedModelPyfunc())
