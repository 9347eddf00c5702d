"""BigQuery table schemas made from the contracts, without Beam: the review desk creates its table with them too."""

from __future__ import annotations

import types
import typing
from datetime import datetime

from pydantic import BaseModel

_BIGQUERY_TYPES = {str: "STRING", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", datetime: "TIMESTAMP"}


def _bigquery_type(annotation: type) -> str:
    """The column type of a field's type; a `str` enum is a STRING column (the first known type in its MRO)."""
    return next(_BIGQUERY_TYPES[base] for base in annotation.__mro__ if base in _BIGQUERY_TYPES)


def bigquery_schema(model: type[BaseModel]) -> dict:
    """The BigQuery table schema of a contract: required columns unless the field may be None."""
    fields = []
    for name, field in model.model_fields.items():
        annotation, nullable = field.annotation, False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation, nullable = members[0], len(members) < len(typing.get_args(annotation))
        annotation = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        mode = "NULLABLE" if nullable else "REQUIRED"
        fields.append({"name": name, "type": _bigquery_type(annotation), "mode": mode})
    return {"fields": fields}
