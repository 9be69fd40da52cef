"""Monitoring of served models: drift against the training reference, realised performance once outcomes
are known, the monitoring report, and the retraining loop that acts on them.

Layer: above scoring, below the faces (service, operations page, CLI), which import it.
"""
