"""The operators' settings of the learned classifier (``rules/reference/classifier.yaml``).

They are targets, not thresholds: the thresholds themselves are chosen by cross-validation
over the examples each time the model is trained, so adding examples never leaves a
threshold tuned for a corpus that no longer exists.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.yamlfile import load_yaml, validate


class ClassifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dispatch_precision: float = Field(
        default=0.95, gt=0.5, lt=1.0,
        description="cross-validated platform precision that automatic dispatch must keep: "
                    "the confidence threshold is the lowest that reaches it")
    urgent_recall: float = Field(
        default=0.95, gt=0.5, le=1.0,
        description="cross-validated share of danger-to-life examples that the urgency head "
                    "and the layers' urgent keyword rules together must mark urgent")
    keyword_boost: float = Field(
        default=3.0, ge=1.0, le=100.0,
        description="how much a catalogue keyword found in the text multiplies its item's "
                    "probability (1: keywords are ignored by the model)")
    folds: int = Field(default=5, ge=2, le=20,
                       description="cross-validation folds used to calibrate at training")
    regularisation: float = Field(default=1.0, gt=0.0,
                                  description="the linear SVM's C (larger fits the examples "
                                              "more closely)")
    urgent_regularisation: float = Field(default=4.0, gt=0.0,
                                         description="the urgency head's C")


def load_classifier_settings(path: Path) -> ClassifierSettings:
    """The file's settings, or the defaults when it is absent; problems name the line."""
    if not path.exists():
        return ClassifierSettings()
    return validate(load_yaml(path), ClassifierSettings)
