"""Numeric precisions a layer can run at."""

from __future__ import annotations

from enum import StrEnum

from .errors import PlanError


class Precision(StrEnum):
    """Precision of one layer in the exported model."""

    FP32 = "fp32"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bits(self) -> int:
        return {"fp32": 32, "int8": 8, "int4": 4}[self.value]

    @classmethod
    def parse(cls, value: object, *, field: str = "precision") -> Precision:
        """Accept ``Precision``, ``"int8"``, ``8`` or ``"8"``; raise a PlanError otherwise."""
        if isinstance(value, Precision):
            return value
        text = str(value).strip().lower()
        by_bits = {"32": cls.FP32, "8": cls.INT8, "4": cls.INT4}
        if text in by_bits:
            return by_bits[text]
        try:
            return cls(text)
        except ValueError:
            raise PlanError(
                f"{field}: {value!r} is not a precision; use one of fp32, int8, int4"
            ) from None

    def __str__(self) -> str:
        return self.value
