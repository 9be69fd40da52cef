"""Scoring: what batch files and the service share once a model is trained.

- batch: every customer of a population at a cutoff, scored and explained into a file;
- explained: a model's scores with their reasons (both paths take reasons from here);
- runtime: a registered model loaded for online scoring (LoadedModel), one row at a time;
- online: the service's scoring engine (ScoringEngine) over the online feature store;
- publish: the feature snapshot the service reads; predlog: the prediction log; outage: a dependency's state.
"""
