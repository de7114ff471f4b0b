"""The result objects at their earlier, documented import path (``ssl_pretrain.evaluation.reports``); they live
in :mod:`ssl_pretrain.evaluation.shared.reports`."""

from .shared.reports import EnsembleReport, FinetuneReport, FrozenReport, GradcamReport, Report

__all__ = ["EnsembleReport", "FinetuneReport", "FrozenReport", "GradcamReport", "Report"]
