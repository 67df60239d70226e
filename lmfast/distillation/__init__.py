"""Distillation: a student learns a teacher's next-token distributions (online, or offline
from stored top-k teacher log-probabilities), optionally a student built from the teacher.

`distill(DistillRequest)` is the capability; `build_student` and `generate_teacher_labels`
are its steps, usable alone.
"""

from __future__ import annotations

from lmfast.distillation.distill import DistillRequest, DistillResult, distill
from lmfast.distillation.student import StudentReport, build_student
from lmfast.distillation.teacher_labels import generate_teacher_labels, open_teacher_labels

__all__ = [
    "DistillRequest",
    "DistillResult",
    "StudentReport",
    "build_student",
    "distill",
    "generate_teacher_labels",
    "open_teacher_labels",
]
