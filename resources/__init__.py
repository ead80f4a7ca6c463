"""Dagster resources. Each is defined once here and imported wherever it is needed."""

from resources.toda import TodaHome, build_resources, warehouse_resource

__all__ = ["TodaHome", "build_resources", "warehouse_resource"]
